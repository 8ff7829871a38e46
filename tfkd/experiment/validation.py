"""The rules between a run's options, checked when its `RunConfig` is made.

`check(config)` refuses every combination that cannot run, before any work, with one
`ConfigError` naming the field at fault ("cache.mode", "method.options.temperature"); the
command line shows the flag (--teacher_cache, --temperature). Single fields check themselves
(their declared choices and ranges, `tfkd.settings.check`). What depends on the data set (class
counts, input shapes) or on files (a teacher path) is checked when the run starts
(`tfkd.experiment.job.check`, `TeachingRun`).
"""

from tfkd import methods, models
from tfkd.data import language_modeling as lm_data
from tfkd.exporting import student as export
from tfkd.lm.causal_lm_export import LM_FORMATS
from tfkd.lm.multi_teacher_distiller import METHODS as LM_WEIGHTINGS
from tfkd.models import gpt
from tfkd.settings import ConfigError, check_value

NONE = "none"
PLAIN_CACHES = ("memory", "disk")
REPLAY = "replay"
REPLAY_MODES = ("consistent", "function_matching")


def check(config):
    """Raises ConfigError for the first rule `config` breaks; returns its registered Method."""
    method = _method(config)
    _options(config, method)
    if lm_data.is_language_model_data(config.data.dataset):
        _language_model(config)
        return method
    _student(config)
    _export(config)
    _curriculum(config, method)
    _teachers(config, method)
    _carried_features(config, method)
    _calibration(config, method)
    _teaching(config, method)
    _cache(config, method)
    return method


def option(method, options, name, undeclared):
    """The value of option `name` in a run's resolved `options` (the given value, else the
    method's declared default), or `undeclared` when `method` declares no such option (what a
    method without it means by it, e.g. T = 1 for a method without a temperature)."""
    return options[name] if name in {known.name for known in method.options} else undeclared


def _method(config):
    name = config.method.name
    if name not in methods.METHODS:
        raise ConfigError(
            "method.name",
            f"`method.name`: {name!r} is not a known method; "
            f"known: {', '.join(methods.METHODS.names())}",
        )
    return methods.METHODS.get(name)


def _student(config):
    name = config.student
    if name in gpt.CAUSAL_LMS:
        raise ConfigError(
            "student",
            f"`student`: {name!r} is a causal language model; it learns from "
            "`data.dataset`=lm:FILE_OR_DIR or stdlib",
        )
    if name not in models.MODELS and name not in models.TEXT_MODELS:
        raise ConfigError(
            "student",
            f"`student`: {name!r} is not a known model; known: {', '.join(models.names())}",
        )


def _options(config, method):
    """Unknown option names, and given values outside the method's declared choices or range."""
    given, name = config.method.options, config.method.name
    declared = {known.name: known for known in method.options}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ConfigError(
            "method.options",
            f"`method.options`: method {name!r} has no option "
            f"{', '.join(unknown)}; its options: "
            f"{', '.join(declared) or 'none'}",
        )
    for key, value in given.items():
        known = declared[key]
        reason = check_value(
            value, known.choices, known.minimum, known.maximum, known.open_minimum, noun=False
        )
        if reason is not None:
            raise ConfigError(f"method.options.{key}", f"`method.options.{key}` {reason}")


def _export(config):
    try:
        export.check_formats(config.output.export, "`output.export`")
    except ValueError as error:
        raise ConfigError("output.export", str(error)) from None


def _curriculum(config, method):
    order, pacing = config.curriculum.order, config.curriculum.pacing
    if order == NONE and pacing == NONE:
        return
    if order == NONE:
        raise ConfigError(
            "curriculum.pacing",
            f"`curriculum.pacing`={pacing} paces a "
            "curriculum; pass `curriculum.order`=teacher, "
            "inverse or random",
        )
    if order != "random" and not method.needs_teacher:
        raise ConfigError(
            "curriculum.order",
            f"`curriculum.order`={order} needs a teacher to "
            "score the data, but `method.name`="
            f"{config.method.name} uses none",
        )
    if method.multi_teacher or config.teaching.mode == "fixed" or config.teaching.distill_dataset:
        raise ConfigError(
            "curriculum.order",
            f"`curriculum.order`={order} orders the training "
            "split for one teacher; it does not combine with "
            "multi-teacher methods, `teaching.mode`=fixed or "
            "`teaching.distill_dataset`",
        )


def _teachers(config, method):
    if not method.multi_teacher:
        return
    specs, name = list(config.teacher.specs), config.method.name
    if not specs:
        raise ConfigError(
            "teacher.specs",
            f"`teacher.specs`: method {name!r} needs a comma list "
            "of teachers (a multi-teacher method), each a .keras "
            "file, a SavedModel folder or an architecture to "
            "train",
        )
    if len(specs) < method.min_teachers:
        raise ConfigError(
            "teacher.specs",
            f"`teacher.specs`: method {name!r} needs at least "
            f"{method.min_teachers} teachers; got {len(specs)} "
            f"({','.join(specs)})",
        )


def _carried_features(config, method):
    """A cache and fixed teaching carry logits only: not for a single-teacher feature method."""
    mode = config.cache.mode
    if (
        not method.needs_features
        or method.multi_teacher
        or (mode == NONE and config.teaching.mode != "fixed")
    ):
        return
    field, value = ("cache.mode", mode) if mode != NONE else ("teaching.mode", "fixed")
    raise ConfigError(
        field,
        f"`{field}`={value} carries only the teacher's logits for "
        f"single-teacher methods, but `method.name`={config.method.name} "
        "reads the teacher's intermediate features; use `cache.mode`=none",
    )


def _calibration(config, method):
    if not config.calibration.enabled:
        return
    name = config.method.name
    if not method.needs_teacher:
        raise ConfigError(
            "calibration.enabled", f"`calibration.enabled`: `method.name`={name} uses no teacher"
        )
    if method.multi_teacher:
        raise ConfigError(
            "calibration.enabled",
            f"`calibration.enabled` works with single-teacher methods, not `method.name`={name}",
        )
    if config.calibration.mode == "replace" and "temperature" not in {
        known.name for known in method.options
    }:
        raise ConfigError(
            "calibration.mode",
            "`calibration.mode`=replace sets the distillation "
            f"temperature, but `method.name`={name} has no "
            "`method.options.temperature` option; use "
            "`calibration.mode`=scale",
        )
    if config.data.validation_fraction == 0:
        raise ConfigError(
            "calibration.enabled",
            "`calibration.enabled` fits T* on the "
            "validation split, which is empty; set "
            "`data.validation_fraction` > 0",
        )


def _teaching(config, method):
    """What teacher and student see (`teaching.mode`) and out-of-domain data."""
    mode, other, name = config.teaching.mode, config.teaching.distill_dataset, config.method.name
    if mode != NONE and config.augment:
        raise ConfigError(
            "augment",
            "`augment` cannot be combined with `teaching.mode`: the "
            "teaching mode does its own augmentation, in-graph",
        )
    if (mode != NONE or other) and method.multi_teacher:
        raise ConfigError(
            "teaching.mode" if mode != NONE else "teaching.distill_dataset",
            "`teaching.mode` and `teaching.distill_dataset` work with "
            f"single-teacher methods, not `method.name`={name}",
        )
    if mode != NONE and not method.needs_teacher:
        raise ConfigError("teaching.mode", f"`teaching.mode`: method {name!r} uses no teacher")
    if other and not method.needs_teacher:
        raise ConfigError(
            "teaching.distill_dataset",
            f"`teaching.distill_dataset`: method {name!r} uses no teacher",
        )


def _cache(config, method):
    """The teacher-output cache holds only where cached outputs are the teacher's outputs on
    what the student sees."""
    mode, teaching = config.cache.mode, config.teaching.mode
    if mode == NONE:
        return
    if not method.needs_teacher:
        raise ConfigError(
            "cache.mode", f"`cache.mode`: method {config.method.name!r} uses no teacher"
        )
    if mode in ("disk", REPLAY) and not config.cache.dir:
        raise ConfigError("cache.dir", f"`cache.dir`: `cache.mode`={mode} needs a folder")
    if teaching == "fixed":  # fixed teaching is the cache: logits once, on clean inputs
        if mode == REPLAY:
            raise ConfigError(
                "cache.mode",
                "`cache.mode`=replay stores the teacher's outputs on "
                "augmented views, but `teaching.mode`=fixed computes "
                "them on the clean images; use `teaching.mode`="
                "consistent or function_matching",
            )
        return
    if mode in PLAIN_CACHES:
        augmentation = (
            "`augment`"
            if config.augment
            else (f"`teaching.mode`={teaching}" if teaching != NONE else None)
        )
        if augmentation:
            raise ConfigError(
                "cache.mode",
                f"`cache.mode`={mode} stores the teacher's outputs "
                f"on un-augmented inputs, but {augmentation} draws "
                "new views every step; use `cache.mode`=replay "
                "(stored views, replayed) with `teaching.mode`="
                "consistent or function_matching",
            )
    elif teaching not in REPLAY_MODES:
        raise ConfigError(
            "cache.mode",
            "`cache.mode`=replay replays stored views to teacher "
            "and student alike; it needs `teaching.mode`=consistent "
            f"or function_matching, got `teaching.mode`={teaching}",
        )


def _is_causal_lm(spec):
    return spec in gpt.CAUSAL_LMS or spec.endswith(".keras") or spec.startswith("preset:")


def _language_model(config):
    """A causal LM distilled per token on language-model data (`tfkd.lm.run`)."""
    dataset, lm, mode = config.data.dataset, config.lm, config.cache.mode
    several = config.method.name in LM_WEIGHTINGS
    if config.method.name != "kd" and not several:
        raise ConfigError(
            "method.name",
            f"`method.name`={config.method.name}: a causal LM on `data.dataset`={dataset} is "
            "distilled per token by kd (`method.options.divergence` forward_kl, reverse_kl or "
            f"jsd), or from several `teacher.specs` by {', '.join(LM_WEIGHTINGS)}",
        )
    teachers = [("teacher.specs", spec) for spec in config.teacher.specs]
    for field, spec in (
        ("student", config.student),
        *(teachers or [("teacher.spec", config.teacher.spec)]),
    ):
        if not _is_causal_lm(spec):
            raise ConfigError(
                field,
                f"`{field}`: {spec!r} is not a causal LM, which `data.dataset`={dataset} "
                f"needs: one of {', '.join(gpt.causal_lm_names())}, a .keras file or preset:DIR",
            )
    if several:
        _language_model_teachers(config)
    elif config.teacher.specs:
        raise ConfigError(
            "teacher.specs", "`teacher.specs`: a causal LM is distilled from one `teacher.spec`"
        )
    if mode not in (NONE, "disk"):
        raise ConfigError(
            "cache.mode",
            f"`cache.mode`={mode}: a causal LM's teacher runs online (none) or is stored as "
            "top-k log-probabilities (disk, `lm.cache_topk`); replay of augmented views does "
            "not apply to text",
        )
    vocabulary = lm_data.ByteTokenizer.vocabulary_size
    if mode == "disk" and lm.cache_topk > vocabulary:
        raise ConfigError(
            "lm.cache_topk",
            f"`lm.cache_topk`={lm.cache_topk} exceeds the vocabulary size {vocabulary} of the "
            "data's byte tokenizer",
        )
    if mode == "disk" and lm.on_policy_fraction > 0:
        raise ConfigError(
            "lm.on_policy_fraction",
            f"`lm.on_policy_fraction`={lm.on_policy_fraction} scores the student's own "
            "samples, but `cache.mode`=disk stores the teacher's outputs on the data only; use "
            "`cache.mode`=none",
        )
    if lm.on_policy_fraction > 0 and lm.max_new_tokens == 0:
        raise ConfigError(
            "lm.max_new_tokens",
            f"`lm.max_new_tokens`=0 samples nothing, but `lm.on_policy_fraction`="
            f"{lm.on_policy_fraction} scores batches on the student's samples; set "
            "`lm.max_new_tokens` >= 1",
        )
    pairs = dataset.startswith(lm_data.LM_PREFIX) and dataset.endswith(".jsonl")
    for field in ("lm.prompt_column", "lm.completion_column"):
        if getattr(lm, field.split(".")[1]) and not pairs:
            raise ConfigError(
                field,
                f"`{field}` names a field of prompt/completion pairs, read from "
                f"`data.dataset`=lm:FILE.jsonl; got `data.dataset`={dataset}",
            )
    _language_model_unused(config)


def _language_model_teachers(config):
    """aver, ebkd and ca_mkd weigh several causal-LM teachers per token
    (`tfkd.lm.multi_teacher_distiller`):
    of their options, the temperature and lambda1 only."""
    _teachers(config, methods.METHODS.get(config.method.name))
    for name in sorted(set(config.method.options) - {"temperature", "lambda1"}):
        raise ConfigError(
            f"method.options.{name}",
            f"`method.options.{name}` does not apply to {config.method.name} on a causal LM "
            "(its temperature and lambda1 do)",
        )
    if config.method.name == "ca_mkd" and config.lm.on_policy_fraction > 0:
        raise ConfigError(
            "lm.on_policy_fraction",
            "`lm.on_policy_fraction`: ca_mkd weighs teachers by the data's next token; it "
            "takes no on-policy batches",
        )


def _language_model_unused(config):
    """Options of image and classifier runs that a causal-LM run would not honour."""
    unused = {
        "augment": config.augment,
        "teaching.mode": config.teaching.mode != NONE,
        "teaching.distill_dataset": bool(config.teaching.distill_dataset),
        "curriculum.order": config.curriculum.order != NONE,
        "calibration.enabled": config.calibration.enabled,
        "method.options.logit_standardization": config.method.options.get(
            "logit_standardization", False
        ),
        "output.export": set(config.output.export) - set(LM_FORMATS),
    }
    for field, used in unused.items():
        if used:
            extra = (
                f": {', '.join(sorted(used))} (a causal LM exports to {', '.join(LM_FORMATS)})"
                if field == "output.export"
                else ""
            )
            raise ConfigError(
                field,
                f"`{field}` does not apply to a causal LM on "
                f"`data.dataset`={config.data.dataset}{extra}",
            )
