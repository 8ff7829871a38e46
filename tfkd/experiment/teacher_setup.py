"""The teachers of a run: loaded from a file or trained once (a resumed run loads them), then
served as they run during distillation (batch norms folded, cast to --teacher_precision)."""

import os
import time

from tfkd import data, models
from tfkd.experiment import fitting, validation, workdir
from tfkd.methods import METHODS
from tfkd.teacher import loading, serving

CHECK_EXAMPLES = 256


def is_model_path(spec):
    """True when a teacher `spec` names a model file, SavedModel folder or preset (to load),
    False when it names an architecture (to train)."""
    return (
        spec.startswith(loading.PRESET)
        or os.path.exists(spec)
        or spec.endswith((".keras", ".h5", "/"))
        or os.sep in spec
    )


def check_teacher_spec(spec, flag):
    """ValueError naming `flag` when `spec` is a missing file or an unknown architecture."""
    if is_model_path(spec):
        path = spec[len(loading.PRESET) :] if spec.startswith(loading.PRESET) else spec
        if not os.path.exists(path):
            raise ValueError(f"{flag}: {path} does not exist")
        return
    if spec not in models.MODELS and spec not in models.TEXT_MODELS:
        raise ValueError(
            f"{flag}: {spec!r} is neither a model file or SavedModel folder nor "
            f"a known architecture; known: {', '.join(models.names())}"
        )


def get_teacher(spec, name, flag, config, bundle, strategy, work, seed):
    """A run's teacher: loads the file `spec` names, or trains the architecture it names as the
    run `config` does (once: a resumed run, or another call with the same `work`, loads it).

    Args:
      name: the teacher's phase and file name in `work` ("teacher", "teacher_0", ...).
      flag: the flag or field `spec` came from, for messages.
      work: the WorkDir it is trained in (None when `spec` is a file).
      seed: the seed its initialisation and batches draw from.
    Returns:
      (model, spec, seconds of training or None when nothing was trained).
    """
    if is_model_path(spec):
        with strategy.scope():
            model = loading.rescale_inputs(
                loading.load_model(spec, flag), config.teacher.input_scale
            )
        return model, spec, None
    saved = work.file(f"{name}.keras")
    record = work.done(name)
    if record is not None:
        workdir.announce_reuse(f"{name} {spec} trained by this run")
        with strategy.scope():
            return loading.load_model(saved, flag), spec, record["seconds"]
    start = time.time()
    fit = fitting.Fit(
        name,
        bundle,
        config.teacher_schedule(),
        seed,
        verbose=config.output.verbose,
        augment=config.augment,
    )
    model, history = fitting.train_classifier(spec, fit, strategy, work)
    seconds = time.time() - start
    fitting.save_trained(model, history, work, saved, f"{name}.csv")
    work.finish(name, {"seconds": seconds})
    return model, spec, seconds


def serve_teacher(teacher, config, options, bundle, strategy):
    """The teacher(s) as they run during distillation: batch norms folded into the layer before
    them (inference mode; outputs unchanged within `serving.FOLD_TOLERANCE`) and cast to
    --teacher_precision, checked against the given teacher's soft targets at the method's
    temperature on up to 256 validation inputs (train inputs without a validation split).

    Returns:
      (served teacher or list of them, summary dict or None without a teacher).
    Raises:
      ValueError naming --teacher_precision when a served teacher's soft targets differ by more
      than `serving.TOLERANCES[precision]`, or when it cannot be cast.
    """
    if teacher is None:
        return None, None
    precision = config.teacher.precision  # one of serving.PRECISIONS (RunConfig checks)
    several = isinstance(teacher, (list, tuple))
    split = bundle.validation if len(bundle.validation[1]) else bundle.train
    inputs = data.to_float(split[0][:CHECK_EXAMPLES])
    temperature = float(
        validation.option(METHODS.get(config.method.name), options, "temperature", undeclared=1.0)
    )
    tolerance = serving.TOLERANCES[precision]
    served, summaries = [], []
    for model in teacher if several else [teacher]:
        # Text models have no batch norms to fold (layer norms only) and nest KerasHub models.
        if not serving.is_functional(model) or bundle.is_text:
            if precision != "float32":
                raise ValueError(
                    f"--teacher_precision={precision} casts a functional Keras "
                    f"teacher; {model.name} is a {type(model).__name__}"
                )
            served.append(model)
            summaries.append({"precision": precision, "batch_norms_folded": 0})
            continue
        with strategy.scope():
            fast = serving.fast_teacher(model, precision)
        try:
            difference = serving.check_soft_targets(
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
                "batch_norms_folded": serving.count_batch_norms(model)
                - serving.count_batch_norms(fast),
                "soft_target_difference": difference,
                "tolerance": tolerance,
                "temperature": temperature,
                "checked_examples": int(len(inputs)),
            }
        )
    summary = {"teachers": summaries} if several else summaries[0]
    return (served if several else served[0]), summary
