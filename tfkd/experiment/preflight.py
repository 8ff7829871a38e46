"""Checks a run makes before its first phase: the method built on untrained (or loaded) models,
so a bad option, a class-count or an input-shape mismatch stops the run before any training."""

import dataclasses

import tensorflow as tf

from tfkd import data
from tfkd.experiment import fitting, teacher_setup
from tfkd.settings import ConfigError
from tfkd.teacher import loading


def check_inputs(model, bundle, flag):
    """One clear error when `model` cannot read the data set's inputs."""
    try:
        model(data.to_float(bundle.train[0][:2]), training=False)
    except (ValueError, TypeError, tf.errors.InvalidArgumentError) as error:
        shape = getattr(model, "input_shape", None)
        expects = f" expects inputs of shape {tuple(shape[1:])}" if shape else ""
        raise ValueError(
            f"{flag}{expects} but --dataset={bundle.name} has inputs of shape "
            f"{tuple(bundle.input_shape)} ({type(error).__name__})"
        ) from None


def dry_build(method, config, options, bundle, teaching_run=None):
    """Builds `method` with `options` on untrained (or loaded) models of `config` and the
    data set `bundle`, before any training, so a bad option, a class-count or input-shape
    mismatch stops the run before its first phase. ConfigError naming
    `method.options.<name>` for an option's error, ValueError otherwise."""
    specs = (
        list(config.teacher.specs)
        if method.multi_teacher
        else ([config.teacher.spec] if method.needs_teacher else [])
    )
    flag = "--teachers" if method.multi_teacher else "--teacher"
    default = tf.distribute.get_strategy()
    # A few examples are enough to build and check; a method that scores its data (kd_sr) then
    # makes no full pass with an untrained teacher.
    bundle = dataclasses.replace(bundle, train=tuple(a[:64] for a in bundle.train))
    found = []
    for spec in specs:
        if teacher_setup.is_model_path(spec):
            model = loading.rescale_inputs(
                loading.load_model(spec, flag), config.teacher.input_scale
            )
            check_inputs(model, bundle, f"{flag} {spec}")
            if bundle.is_text:
                loading.check_vocabulary(model, spec, bundle.tokenizer, flag)
        else:
            model = fitting.build_model(spec, bundle, default)
        found.append(model)
    teacher = found if method.multi_teacher else (found[0] if found else None)
    student = fitting.build_model(config.student, bundle, default, config.schedule.precision)
    try:
        distiller = method.build(student, teacher, bundle, options)
        if teaching_run is not None:
            teaching_run.check_distiller(distiller)
    except ValueError as error:
        message = str(error)
        for name in options:  # a message that starts with an option's name is about that field
            if message.startswith(f"{name} "):
                raise ConfigError(
                    f"method.options.{name}", f"`method.options.{name}`{message[len(name) :]}"
                ) from None
        raise ValueError(message) from None
