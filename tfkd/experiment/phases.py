"""The phases of a run, each resumable: train or load teachers, calibrate, fit a model.

Every training phase fits through `fit_resumable`: per-epoch checkpoints in
`<work>/checkpoints/<phase>/`, batches that are a function of (seed, epoch), and a re-run that
loads the last checkpoint and continues from the next epoch.
"""

import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tfkd import calibration, checkpoint, curriculum, data, fast_teacher, models, teachers, training
from tfkd import callbacks as run_callbacks
from tfkd.callbacks import BatchValueRecorder, TestMonitor
from tfkd.data import pipeline
from tfkd.distillers import Distiller
from tfkd.experiment import validation
from tfkd.exporting import student as export
from tfkd.methods import METHODS
from tfkd.settings import ConfigError


def seed_everything(seed):
    keras.utils.set_random_seed(seed)


def build_model(arch, bundle, strategy, precision="float32"):
    is_text_model = arch in models.TEXT_MODELS
    if is_text_model != bundle.is_text:
        kind = "token ids" if bundle.is_text else "images or vectors"
        known = models.TEXT_MODELS.names() if bundle.is_text else models.names()
        raise ValueError(
            f"model {arch!r} cannot read --dataset={bundle.name}, which holds "
            f"{kind}; models for it: {', '.join(known)}"
        )
    if is_text_model:  # no normalization statistics: the inputs are token ids
        with strategy.scope(), training.precision_policy(precision):
            return models.build(
                arch, bundle.input_shape, bundle.num_classes, vocabulary_size=bundle.vocabulary_size
            )
    mean, variance = bundle.stats()
    with strategy.scope(), training.precision_policy(precision):
        return models.build(
            arch,
            input_shape=bundle.input_shape,
            num_classes=bundle.num_classes,
            mean=mean,
            variance=variance,
        )


def in_float32(model, arch, bundle, strategy):
    """`model` (trained at any precision; its weights are float32) as a float32 model, which is
    what the run evaluates, saves and exports."""
    if model.dtype_policy.name == "float32":
        return model
    plain = build_model(arch, bundle, strategy)
    plain.set_weights(model.get_weights())
    return plain


def sharded(dataset):
    """Under MultiWorkerMirroredStrategy every worker reads its share of each global batch
    (data sharding), so the global batch is --batch_size whatever the number of workers."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def build_locally(model, dataset):
    """Keras's `fit` learns the input shapes by reducing the first distributed batch across
    replicas (`_maybe_symbolic_build`), a collective that fails under
    MultiWorkerMirroredStrategy (TF 2.21, Keras 3.15); build from one local batch instead."""
    if not isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    batch = next(iter(dataset.take(1)))
    with model.distribute_strategy.scope():
        model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = lambda *args, **kwargs: None


def validation_dataset(bundle, batch_size, extras=None):
    """The validation batches; with `extras` (cached teacher outputs) they carry them."""
    x, y = bundle.validation
    if not len(y):
        return None
    if extras is None:
        return sharded(data.as_dataset(x, y, batch_size))
    dataset, _ = pipeline.epochs_dataset(x, y, np.arange(len(y))[None], batch_size, extras=extras)
    return sharded(dataset)


def accuracy(model, split, batch_size=256):
    x, y = split
    if not len(y):
        return None
    logits = model.predict(data.to_float(x), batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(y)))


def fit_resumable(
    model,
    work,
    phase,
    bundle,
    schedule,
    seed,
    verbose,
    orders=None,
    augment=False,
    extras=None,
    callbacks=(),
    write=True,
    stream=None,
    validation_extras=None,
):
    """Fits `model` (compiled) on the training split for `schedule.epochs`, resuming.

    Args:
      work: the run's WorkDir; phase: names the checkpoint folder and the messages.
      orders: int [epochs, N] training order per epoch (default: a seeded shuffle per epoch).
      extras: per-example arrays the batches carry (`pipeline.epochs_dataset`);
        validation_extras: the same for the validation batches.
      stream: optional `make(orders, first_epoch, batch_size, seed) -> (dataset, steps)`
        building the training batches instead of `pipeline.epochs_dataset` (replay).
    Returns:
      the list of epoch logs (the earlier, resumed epochs included).
    """
    folder = work.file("checkpoints", phase)
    if hasattr(model, "build") and not model.built and not bundle.is_text:
        model.build((None, *bundle.input_shape))
    resumed = checkpoint.resume(model, folder)
    first_epoch, first_step, history = resumed.epoch, resumed.step, resumed.history
    examples = len(bundle.train[1])
    if first_step:
        print(
            f"Resuming {phase} at epoch {first_epoch + 1} of {schedule.epochs}, step "
            f"{first_step + 1}",
            flush=True,
        )
    elif first_epoch:
        print(f"Resuming {phase} at epoch {first_epoch + 1} of {schedule.epochs}", flush=True)
    if first_epoch >= schedule.epochs:
        return history
    if orders is None:
        orders = pipeline.shuffled_orders(examples, schedule.epochs, seed, first_epoch)
    else:
        orders = np.asarray(orders)[first_epoch:]
    if stream is not None:
        train, steps = stream(orders, first_epoch, schedule.batch_size, seed)
    else:
        train, steps = pipeline.epochs_dataset(
            *bundle.train, orders, schedule.batch_size, augment, seed, first_epoch, extras
        )
    saver = checkpoint.EpochCheckpoint(
        folder, history, save=write, phase=phase, offset=first_step, metrics=resumed.metrics
    )
    callbacks = [*callbacks, run_callbacks.NonFiniteLossGuard(phase), saver]
    if write:
        callbacks.append(keras.callbacks.TensorBoard(work.file("logs", phase)))
    build_locally(model, train)
    validation = validation_dataset(bundle, schedule.batch_size, validation_extras)
    # A run stopped after step k of an epoch reads that epoch's batches from k + 1 on: one fit
    # finishes the epoch, a second one runs the epochs after it.
    train = train.skip(first_step)
    parts = (
        [
            (train.take(steps - first_step), first_epoch + 1, steps - first_step),
            (train.skip(steps - first_step), schedule.epochs, steps),
        ]
        if first_step
        else [(train, schedule.epochs, steps)]
    )
    with checkpoint.graceful_stop():
        for part, (batches, last_epoch, part_steps) in enumerate(parts):
            if last_epoch > first_epoch + part:
                model.fit(
                    sharded(batches),
                    validation_data=validation,
                    epochs=last_epoch,
                    initial_epoch=first_epoch + part,
                    steps_per_epoch=part_steps,
                    shuffle=False,
                    verbose=verbose,
                    callbacks=callbacks,
                )
    return saver.history


def train_classifier(arch, bundle, strategy, schedule, work, phase, seed, verbose, augment):
    """Trains `arch` alone with cross-entropy (teachers and baselines), resuming."""
    print(f"Training {phase} {arch} for {schedule.epochs} epochs", flush=True)
    seed_everything(seed)
    model = build_model(arch, bundle, strategy, schedule.precision)
    steps = -(-len(bundle.train[1]) // schedule.batch_size)
    with strategy.scope():
        if strategy.extended._in_multi_worker_mode():
            # Cross-entropy through a teacher-less Distiller, whose step logs Keras can reduce
            # across workers (see tfkd.distillers.distiller.per_worker_logs).
            trainer = Distiller(
                model,
                None,
                alpha=0.0,
                target="label_smoothing",
                target_options={"epsilon": 0.0, "num_classes": bundle.num_classes},
            )
            trainer.compile(
                optimizer=training.make_optimizer(schedule, steps), metrics=["accuracy"]
            )
        else:
            trainer = training.compile_classifier(model, schedule, steps)
    history = fit_resumable(
        trainer, work, phase, bundle, schedule, seed, verbose, augment=augment, write=work.write
    )
    return in_float32(model, arch, bundle, strategy), history


def is_model_path(spec):
    return (
        spec.startswith(teachers.PRESET)
        or os.path.exists(spec)
        or spec.endswith((".keras", ".h5", "/"))
        or os.sep in spec
    )


def check_teacher_spec(spec, flag):
    if is_model_path(spec):
        path = spec[len(teachers.PRESET) :] if spec.startswith(teachers.PRESET) else spec
        if not os.path.exists(path):
            raise ValueError(f"{flag}: {path} does not exist")
        return
    if spec not in models.MODELS and spec not in models.TEXT_MODELS:
        raise ValueError(
            f"{flag}: {spec!r} is neither a model file or SavedModel folder nor "
            f"a known architecture; known: {', '.join(models.names())}"
        )


def get_teacher(spec, name, flag, config, bundle, strategy, work, seed):
    """Loads a teacher file, or trains an architecture (once: a resumed run loads it).

    Returns (model, spec, seconds or None when nothing was trained).
    """
    if is_model_path(spec):
        with strategy.scope():
            model = teachers.rescale_inputs(
                teachers.load_model(spec, flag), config.teacher.input_scale
            )
        return model, spec, None
    saved = work.file(f"{name}.keras")
    record = work.done(name)
    if record is not None:
        print(f"Loading {name} {spec} trained by this run", flush=True)
        with strategy.scope():
            return teachers.load_model(saved, flag), spec, record["seconds"]
    start = time.time()
    model, history = train_classifier(
        spec,
        bundle,
        strategy,
        config.teacher_schedule(),
        work,
        name,
        seed,
        config.output.verbose,
        config.augment,
    )
    seconds = time.time() - start
    if work.write:
        export.save_keras(model, saved)
        with open(work.file(f"{name}.csv"), "w") as handle:
            handle.write(checkpoint.history_csv(history))
    work.finish(name, {"seconds": seconds})
    return model, spec, seconds


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
    """Builds the method on untrained (or loaded) models before any training, so a bad option,
    a class-count or input-shape mismatch stops the run before its first phase."""
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
        if is_model_path(spec):
            model = teachers.rescale_inputs(
                teachers.load_model(spec, flag), config.teacher.input_scale
            )
            check_inputs(model, bundle, f"{flag} {spec}")
            if bundle.is_text:
                teachers.check_vocabulary(model, spec, bundle.tokenizer, flag)
        else:
            model = build_model(spec, bundle, default)
        found.append(model)
    teacher = found if method.multi_teacher else (found[0] if found else None)
    student = build_model(config.student, bundle, default, config.schedule.precision)
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


def calibrate(teacher, config, options, bundle, strategy, work):
    """--calibrate_teacher: fits T* on the validation split (once) and applies it.

    Returns (teacher, options, summary or None).
    """
    if not config.calibration.enabled or teacher is None:
        return teacher, options, None
    summary = work.done("calibration")
    if summary is None:
        print("Calibrating the teacher: fitting T* on the validation split", flush=True)
        # A run that must not read the test split (a tuning trial) measures on validation.
        measured = (
            bundle
            if config.output.evaluate_test
            else dataclasses.replace(bundle, test=bundle.validation)
        )
        summary = measure_calibration(
            teacher, measured, work.path if work.write else None, config.calibration.bins, "teacher"
        )
        if not config.output.evaluate_test:
            summary["eval_split"] = "validation"
        summary["mode"] = config.calibration.mode
        checkpoint.fault_point("calibration")
        work.finish("calibration", summary)
    temperature = summary["temperature"]
    if config.calibration.mode == "scale":
        with strategy.scope():
            teacher = calibration.calibrate_model(teacher, temperature)
    else:
        options = {**options, "temperature": temperature}
    if "temperature" in options:
        summary = {**summary, "distillation_temperature": float(options["temperature"])}
    print(
        f"  T* = {temperature:.4f}   test ECE {summary['ece_before']:.4f} -> "
        f"{summary['ece_after']:.4f}   NLL {summary['nll_before']:.4f} -> "
        f"{summary['nll_after']:.4f}",
        flush=True,
    )
    return teacher, options, summary


def logits(model, split, batch_size=256):
    """model(to_float(x)) for a (x, y) split -> [n, K] float64 logits."""
    return np.asarray(
        model.predict(data.to_float(split[0]), batch_size=batch_size, verbose=0), np.float64
    )


def measure_calibration(model, bundle, output_dir, num_bins, title):
    """Fits T* on `bundle.validation`, measures the test split before and after and, given
    `output_dir`, writes reliability_before.png and reliability_after.png; returns the summary."""
    validation_logits, test_logits = logits(model, bundle.validation), logits(model, bundle.test)
    summary = calibration.calibration_summary(
        validation_logits, bundle.validation[1], test_logits, bundle.test[1], num_bins
    )
    temperature = summary["temperature"]
    if output_dir is not None:
        for when, t in (("before", 1.0), ("after", temperature)):
            calibration.reliability_diagram(
                calibration.softmax(test_logits, t),
                bundle.test[1],
                os.path.join(output_dir, f"reliability_{when}.png"),
                num_bins,
                title=f"{title}, test split, T = {t:.3f}",
            )
    summary.update(fit_split="validation", eval_split="test")
    return summary


def training_orders(config, teacher, bundle, work):
    """int [epochs, N]: the examples of each epoch, for --curriculum (None: a seeded shuffle)."""
    settings, seed = config.curriculum, config.seed
    if settings.order == "none":
        return None
    if settings.order == "random":
        order = curriculum.curriculum_order("random", num_examples=len(bundle.train[1]), seed=seed)
    else:
        if teacher is None:
            raise ValueError(
                f"--curriculum={settings.order} needs a teacher to score the data, "
                "but this method uses none"
            )
        saved = work.file("curriculum.npz")
        if os.path.isfile(saved):
            order = np.load(saved)["order"]
        else:
            print(f"Scoring {len(bundle.train[1])} training examples with the teacher", flush=True)
            scores = curriculum.training_scores(teacher, bundle, verbose=config.output.verbose)
            order = curriculum.curriculum_order(settings.order, scores)
            if work.write:
                correct, confidence, labels = scores
                curriculum.plot_confidence_profile(
                    correct, confidence, labels, work.file("curriculum.png")
                )
                np.savez_compressed(
                    saved, order=order, correct=correct, confidence=confidence, labels=labels
                )
    return curriculum.epoch_orders(
        order,
        config.schedule.epochs,
        settings.pacing,
        settings.pacing_start,
        settings.pacing_epochs,
        seed,
    )


CHECK_EXAMPLES = 256


def serve_teacher(teacher, config, options, bundle, strategy):
    """The teacher(s) as they run during distillation: batch norms folded into the layer before
    them (inference mode; outputs unchanged within `fast_teacher.FOLD_TOLERANCE`) and cast to
    --teacher_precision, checked against the given teacher's soft targets at the method's
    temperature on up to 256 validation inputs (train inputs without a validation split).

    Returns:
      (served teacher or list of them, summary dict or None without a teacher).
    Raises:
      ValueError naming --teacher_precision when a served teacher's soft targets differ by more
      than `fast_teacher.TOLERANCES[precision]`, or when it cannot be cast.
    """
    if teacher is None:
        return None, None
    precision = config.teacher.precision  # one of fast_teacher.PRECISIONS (RunConfig checks)
    several = isinstance(teacher, (list, tuple))
    split = bundle.validation if len(bundle.validation[1]) else bundle.train
    inputs = data.to_float(split[0][:CHECK_EXAMPLES])
    temperature = float(
        validation.option(METHODS.get(config.method.name), options, "temperature", undeclared=1.0)
    )
    tolerance = fast_teacher.TOLERANCES[precision]
    served, summaries = [], []
    for model in teacher if several else [teacher]:
        # Text models have no batch norms to fold (layer norms only) and nest KerasHub models.
        if not fast_teacher.is_functional(model) or bundle.is_text:
            if precision != "float32":
                raise ValueError(
                    f"--teacher_precision={precision} casts a functional Keras "
                    f"teacher; {model.name} is a {type(model).__name__}"
                )
            served.append(model)
            summaries.append({"precision": precision, "batch_norms_folded": 0})
            continue
        with strategy.scope():
            fast = fast_teacher.fast_teacher(model, precision)
        try:
            difference = fast_teacher.check_soft_targets(
                model.predict(inputs, batch_size=CHECK_EXAMPLES, verbose=0),
                fast.predict(inputs, batch_size=CHECK_EXAMPLES, verbose=0),
                temperature,
                tolerance,
            )
        except ValueError as error:
            raise ValueError(f"--teacher_precision={precision}: {error}") from None
        served.append(fast)
        summaries.append(
            {
                "precision": precision,
                "batch_norms_folded": fast_teacher.count_batch_norms(model)
                - fast_teacher.count_batch_norms(fast),
                "soft_target_difference": difference,
                "tolerance": tolerance,
                "temperature": temperature,
                "checked_examples": int(len(inputs)),
            }
        )
    summary = {"teachers": summaries} if several else summaries[0]
    return (served if several else served[0]), summary


def distill(method, config, options, teacher, bundle, strategy, work, teaching_run):
    """Builds the student and the method's distiller and fits it (resuming); returns
    (student, history). A resumed run whose distillation finished loads the student."""
    saved = work.file("checkpoints", "student.keras")
    if work.done("distill") is not None:
        print("Loading the student distilled by this run", flush=True)
        with strategy.scope():
            return teachers.load_model(saved, "student"), work.done("distill")["history"]
    schedule, seed = config.schedule, config.seed
    served, serving = serve_teacher(teacher, config, options, bundle, strategy)
    teaching_run.serving = serving
    print(f"Distilling {config.student} with {options} for {schedule.epochs} epochs", flush=True)
    # Seeded here, so the student starts alike whether the teacher was trained or loaded.
    seed_everything(seed)
    student = build_model(config.student, bundle, strategy, schedule.precision)
    orders = training_orders(config, served, bundle, work)
    steps = -(-len(bundle.train[1]) // schedule.batch_size)
    with strategy.scope():
        distiller = method.build(student, served, bundle, options)
        teaching_run.attach(distiller)
        distiller.compile(optimizer=training.make_optimizer(schedule, steps), metrics=["accuracy"])
    progress = 1 if config.output.verbose else 0
    extras = teaching_run.extras(bundle, served, distiller, work, config, options, progress)
    stream = teaching_run.stream(bundle, served, options, work, config, progress)
    callbacks = []
    if config.teaching.test_every:
        callbacks.append(TestMonitor(student, bundle.test, config.teaching.test_every, teacher))
    if getattr(distiller, "batch_values", ()) and work.write:
        callbacks.append(BatchValueRecorder(work.file("batch_values.csv")))
    history = fit_resumable(
        distiller,
        work,
        "distill",
        bundle,
        schedule,
        seed,
        config.output.verbose,
        orders,
        config.augment,
        extras,
        callbacks,
        write=work.write,
        stream=stream,
        validation_extras=teaching_run.validation_extras,
    )
    student = in_float32(student, config.student, bundle, strategy)
    if work.write:
        export.save_keras(student, saved)
        with open(work.file("history.csv"), "w") as handle:
            handle.write(checkpoint.history_csv(history))
    work.finish("distill", {"history": history, "serving": serving})
    return student, history


def baseline(config, bundle, strategy, work):
    """The student alone with the distillation schedule (once); returns (model, seconds)."""
    saved = work.file("checkpoints", "baseline.keras")
    record = work.done("baseline")
    if record is not None:
        with strategy.scope():
            return teachers.load_model(saved, "baseline"), record["seconds"]
    start = time.time()
    model, history = train_classifier(
        config.student,
        bundle,
        strategy,
        config.schedule,
        work,
        "baseline",
        config.seed,
        config.output.verbose,
        config.augment,
    )
    seconds = time.time() - start
    if work.write:
        export.save_keras(model, saved)
        with open(work.file("baseline.csv"), "w") as handle:
            handle.write(checkpoint.history_csv(history))
    work.finish("baseline", {"seconds": seconds})
    return model, seconds


def make_strategy(config):
    return training.make_strategy(config.strategy, tpu=config.tpu)


def set_determinism(config):
    seed_everything(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
