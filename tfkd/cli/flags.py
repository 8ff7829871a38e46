"""Every `bin/distill` flag, and the one mapping between flags and `tfkd.experiment.RunConfig`.

Each flag is a (name, config field, help) row; its type and default come from the config's own
default, so the two cannot drift. Method options are generated from the method registry.
`parse(args)` fills a fresh `absl.flags.FlagValues` (no global state), `to_config` maps it to a
`RunConfig`, and `to_args` maps a config back to command-line strings.
"""
import dataclasses
import re

from absl import flags

from tfkd import augment, curriculum, export, fast_teacher, methods, targets, teaching, training
from tfkd.experiment.config import RunConfig

GROUPS = ("data", "models", "method", "training", "output")
# Integer fields whose None means "all" are 0 on the command line.
ZERO_IS_NONE = {"train_limit", "test_limit"}
TEACHING_NONE = "none"
CACHE_MODES = ("none", "memory", "disk", "replay")

# (flag, config field path, help[, choices])
TABLE = {
    "data": [
        ("dataset", "data.dataset",
         "A tensorflow-datasets name, idx:DIR, npz:DIR, folder:DIR, text:DIR, csv:FILE_OR_DIR, "
         "synthetic or text_synthetic."),
        ("data_dir", "data.data_dir", "tensorflow-datasets data folder."),
        ("validation_fraction", "data.validation_fraction",
         "Fraction of train held out for validation."),
        ("train_limit", "data.train_limit", "Stratified subset of the training split (0 = all)."),
        ("test_limit", "data.test_limit", "Stratified subset of the test split (0 = all)."),
        ("seed", "data.seed", "Seed for data splits, initialisation and shuffling."),
        ("augment", "augment", "Pad-4 random crop and flip for images."),
        ("distill_dataset", "teaching.distill_dataset",
         "Out-of-domain distillation: the student learns from this data set's train images "
         "(resized to --dataset's input shape, labels unused) and is evaluated on --dataset's "
         "test split."),
        ("synthetic_size", "data.synthetic_size", "synthetic: number of examples."),
        ("synthetic_dim", "data.synthetic_dim", "synthetic: input dimension d."),
        ("synthetic_classes", "data.synthetic_classes", "synthetic: number of classes C."),
        ("synthetic_superclasses", "data.synthetic_superclasses",
         "synthetic: number of super-classes S."),
        ("class_similarity", "data.class_similarity", "synthetic: cosine of class to super-class."),
        ("difficulty", "data.difficulty", "synthetic: number of sine terms M (0 = separable)."),
        ("text_column", "data.text_column", "csv: the column holding the text."),
        ("label_column", "data.label_column",
         "csv: the column holding the label (integers or names)."),
        ("tokenizer", "data.tokenizer",
         "Text sets: wordpiece (KerasHub WordPiece, vocabulary fitted on the training split and "
         "saved as vocabulary.txt) or byte (UTF-8 bytes, no vocabulary).", ("wordpiece", "byte")),
        ("vocabulary_size", "data.vocabulary_size",
         "Text sets: size of the fitted WordPiece vocabulary."),
        ("sequence_length", "data.sequence_length",
         "Text sets: tokens per example, [CLS] and [SEP] included (padded or truncated)."),
        ("vocabulary", "data.vocabulary",
         "Text sets: a WordPiece vocabulary file to use instead of fitting one (e.g. the "
         "vocabulary.txt beside a teacher)."),
    ],
    "models": [
        ("teacher", "teacher.spec",
         "A .keras file or SavedModel folder to load, or an architecture to train."),
        ("teachers", "teacher.specs", "Multi-teacher methods: a comma list, each a .keras file, "
         "a SavedModel folder or an architecture to train (saved as teacher_<k>.keras)."),
        ("teacher_epochs", "teacher.epochs", "Epochs when the teacher is trained here."),
        ("teacher_input_scale", "teacher.input_scale",
         "Multiply the [0, 1] inputs by this for a loaded teacher (255 for raw pixels)."),
        ("student", "student", "Student architecture."),
        ("teacher_cache", "cache.mode",
         "How the teacher's outputs reach training: none (the teacher runs on every batch), "
         "memory or disk (computed once on the un-augmented training inputs and carried with "
         "the batches, so distillation runs at student speed; disk shares them through "
         "--cache_dir), replay (--replay_views augmented views per image and the teacher's "
         "top --replay_topk probabilities on each, stored in --cache_dir and replayed; with "
         "--teaching=consistent or function_matching).", CACHE_MODES),
        ("cache_dir", "cache.dir",
         "Folder of the disk and replay caches, shared by every run; an entry is keyed by the "
         "teacher weights, data set, split, subset, seed and preprocessing."),
        ("replay_views", "cache.replay_views", "--teacher_cache=replay: views stored per image."),
        ("replay_topk", "cache.replay_topk",
         "--teacher_cache=replay: teacher probabilities kept per view."),
        ("teacher_precision", "teacher.precision",
         "Precision of the served teacher (batch norms folded): float32, or bfloat16 (checked "
         "against the float32 teacher's soft targets on validation inputs; a larger difference "
         "than tfkd.fast_teacher.TOLERANCES stops the run).", fast_teacher.PRECISIONS),
    ],
    "method": [
        ("method", "method.name", "Distillation method."),
        ("teaching", "teaching.mode",
         "What teacher and student see of a training batch: none (the batch as it comes, to "
         "both), fixed (teacher logits computed once on un-augmented images), independent (two "
         "augmented views), consistent (one augmented view), function_matching (consistent plus "
         "mixup; KL only unless --alpha is given).", (TEACHING_NONE, *teaching.MODES)),
        ("mixup_alpha", "teaching.mixup_alpha", "Beta(a, a) parameter of the mixup weight."),
        ("mixup_partners", "teaching.mixup_partners",
         "Mixup partner of each example: a random permutation without fixed points, or the "
         "next example in the batch (roll).", augment.PARTNERS),
        ("crop_min_scale", "teaching.crop_min_scale",
         "Smallest area fraction of the inception crop used by --teaching."),
        ("teaching_flip", "teaching.flip", "Random horizontal flips in --teaching."),
        ("curriculum", "curriculum.order",
         "Training order: none (shuffled), teacher (teacher-scored, easy to hard, "
         "class-stratified), inverse (hard to easy) or random (a fixed random order: the "
         "control for teacher).", curriculum.CURRICULA),
        ("pacing", "curriculum.pacing",
         "Curriculum pacing: none keeps the fixed order every epoch; linear, step and "
         "exponential draw early epochs from a shuffled easiest prefix.", curriculum.PACINGS),
        ("pacing_start", "curriculum.pacing_start",
         "Fraction of the curriculum used in the first epoch."),
        ("pacing_epochs", "curriculum.pacing_epochs",
         "Pacing growth: the epoch from which the whole training set is in use."),
        ("calibrate_teacher", "calibration.enabled",
         "Fit the teacher's temperature T* on the validation split (minimum NLL) and distill "
         "from the calibrated teacher."),
        ("calibration_mode", "calibration.mode",
         "scale (default): teacher logits / T*, then the distillation temperature; "
         "replace: the distillation temperature becomes T* (the paper's Eq. 3).",
         targets.CALIBRATION_MODES),
        ("calibration_bins", "calibration.bins",
         "Confidence bins of the ECE and the reliability diagrams."),
    ],
    "training": [
        ("epochs", "schedule.epochs", "Distillation epochs."),
        ("batch_size", "schedule.batch_size", "Global batch size."),
        ("optimizer", "schedule.optimizer", "Optimizer.", training.OPTIMIZERS),
        ("learning_rate", "schedule.learning_rate", "Peak learning rate."),
        ("lr_schedule", "schedule.lr_schedule", "Learning-rate schedule.", training.SCHEDULES),
        ("warmup_epochs", "schedule.warmup_epochs", "Linear warm-up (cosine only)."),
        ("weight_decay", "schedule.weight_decay", "Decoupled weight decay."),
        ("precision", "schedule.precision",
         "Compute precision of the models trained here: float32, or mixed_bfloat16 (bfloat16 "
         "compute, float32 weights and logits; saved and exported models compute in float32).",
         training.PRECISIONS),
        ("strategy", "strategy", "tf.distribute strategy.", training.STRATEGIES),
        ("tpu", "tpu", "--strategy=tpu: the TPU's name or grpc:// address (TPUClusterResolver)."),
        ("deterministic", "deterministic",
         "Seed everything and enable TensorFlow op determinism: identical weights from run to "
         "run and after a resume."),
    ],
    "output": [
        ("output_dir", "output.dir",
         "Output folder (default savedmodels/<dataset>-<method>-<student>-<time>). A run in "
         "progress lives in <output_dir>.partial/; re-running the same command resumes it."),
        ("overwrite", "output.overwrite",
         "Replace an existing --output_dir, and start over instead of resuming a .partial/ one."),
        ("export", "output.export",
         f"Export formats, a comma list of {', '.join(export.FORMATS)}."),
        ("baseline", "output.baseline", "Also train the student alone with the same schedule."),
        ("test_every", "teaching.test_every",
         "Every N epochs record the student's test accuracy as history column test_accuracy "
         "(0 = never)."),
        ("verbose", "output.verbose",
         "Keras verbosity: 0 silent, 1 progress bar, 2 one line/epoch."),
    ],
}
OPTION_PATH = "method.options."
# Flags that change how a run reports, not what it computes: a resumed run may change them.
REPORTING = ("verbose", "overwrite", "output_dir", "cache_dir")


def _get(config, path):
    for part in path.split("."):
        config = config[part] if isinstance(config, dict) else getattr(config, part)
    return config


def _rows():
    """(group, flag, path, help, choices, default) for every flag, method options included."""
    defaults = RunConfig()
    for group in GROUPS:
        for row in TABLE[group]:
            name, path, help_text = row[:3]
            yield group, name, path, help_text, row[3] if len(row) > 3 else (), _get(defaults, path)
        if group == "method":
            for option in methods.all_options().values():
                yield (group, option.name, OPTION_PATH + option.name, option.help,
                       option.choices, option.default)


def define(flag_values, groups=GROUPS, module_prefix="bin/distill", names=None):
    """Defines the flags of `groups` (or just `names`) in `flag_values`, each under module
    '<prefix> <group>'; flags already defined there are left alone."""
    for group, name, _, help_text, choices, default in _rows():
        if (group not in groups if names is None else name not in names) or name in flag_values:
            continue
        kwargs = {"flag_values": flag_values, "module_name": f"{module_prefix} {group}"}
        if name in ZERO_IS_NONE:
            flags.DEFINE_integer(name, default or 0, help_text, **kwargs)
        elif choices:
            flags.DEFINE_enum(name, default, choices, help_text, **kwargs)
        elif isinstance(default, bool):
            flags.DEFINE_boolean(name, default, help_text, **kwargs)
        elif isinstance(default, int):
            flags.DEFINE_integer(name, default, help_text, **kwargs)
        elif isinstance(default, float):
            flags.DEFINE_float(name, default, help_text, **kwargs)
        elif isinstance(default, tuple):
            flags.DEFINE_list(name, list(default), help_text, **kwargs)
        else:
            flags.DEFINE_string(name, default, help_text, **kwargs)
    return flag_values


def new_flag_values(extra=None):
    """A fresh FlagValues with every bin/distill flag (and `extra(flag_values)`'s own)."""
    flag_values = flags.FlagValues()
    define(flag_values)
    if extra is not None:
        extra(flag_values)
    return flag_values


def parse(args, flag_values=None, program="bin/distill"):
    """Parses command-line strings into `flag_values` (default: a fresh one) and returns it.

    Raises ValueError with absl's one-line reason (an unknown flag, a bad value, a missing
    flagfile) or for positional arguments.
    """
    flag_values = new_flag_values() if flag_values is None else flag_values
    try:
        rest = flag_values([program, *args])
    except flags.Error as error:
        message = " ".join(str(error).split())
        if "Unable to open flagfile" in message:
            message = "--flagfile: cannot open " + message.split("No such file or directory: ")[-1]
        raise ValueError(message) from None
    if len(rest) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(rest[1:])} (flags start with --)")
    return flag_values


def _set(tree, path, value):
    head, _, rest = path.partition(".")
    if not rest:
        tree[head] = value
    else:
        _set(tree.setdefault(head, {}), rest, value)


def to_config(flag_values):
    """The RunConfig of parsed flags; method options only where given, for the chosen method."""
    method = flag_values["method"].value
    if method not in methods.METHODS:
        raise ValueError(f"--method: {method!r} is not a known method; known: "
                         f"{', '.join(methods.METHODS.names())}")
    own = {option.name for option in methods.METHODS.get(method).options}
    tree = {"method": {"options": {}}}
    for _, name, path, *_ in _rows():
        if name not in flag_values:
            continue
        value = flag_values[name].value
        if path.startswith(OPTION_PATH):
            if name in own and flag_values[name].present:
                tree["method"]["options"][name] = value
            continue
        if name in ZERO_IS_NONE:
            value = value or None
        elif isinstance(value, list):
            value = tuple(item.strip() for item in value if item.strip())
        _set(tree, path, value)
    try:
        return _build_config(tree)
    except ValueError as error:  # a library message names the argument: name the flag
        message = str(error)
        name = message.split(" ", 1)[0]
        raise ValueError(f"--{message}" if name in flag_values else message) from None


def _build_config(tree):
    defaults = RunConfig()
    parts = {}
    for field in dataclasses.fields(RunConfig):
        value = tree.get(field.name, getattr(defaults, field.name))
        default = getattr(defaults, field.name)
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            value = dataclasses.replace(default, **value)
        parts[field.name] = value
    return RunConfig(**parts)


def to_values(config):
    """{flag: value} for `config`: every flag but those at None, the given method options."""
    values = {}
    options = config.method.options
    for _, name, path, *_ in _rows():
        if path.startswith(OPTION_PATH):
            if name in options:
                values[name] = options[name]
            continue
        value = _get(config, path)
        if name in ZERO_IS_NONE:
            value = value or 0
        if value is not None:
            values[name] = list(value) if isinstance(value, tuple) else value
    return values


def to_args(config):
    """Command-line strings for `config` (every flag, so that a flagfile stands alone)."""
    return [_arg(name, value) for name, value in to_values(config).items()]


def _arg(name, value):
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    if isinstance(value, (list, tuple)):
        return f"--{name}={','.join(map(str, value))}"
    if isinstance(value, float):
        return f"--{name}={value!r}"
    return f"--{name}={value}"


def flagfile_text(args, comments=()):
    """An absl flagfile: optional '# ' comment lines, then one argument per line."""
    return "\n".join([f"# {comment}" for comment in comments] + list(args)) + "\n"


def help_text(flag_values, program, doc):
    """`--help`: the program's summary, then its own flags grouped, without absl's."""
    lines = [doc.strip(), ""]
    for module in flag_values.flags_by_module_dict():
        if module.startswith(program):
            lines += [flag_values.module_help(module).rstrip(), ""]
    lines.append("--flagfile=FILE reads flags from FILE; --helpfull also lists absl's flags.")
    return "\n".join(lines)


# ---- bin/calibrate, bin/export and bin/analyze: their own flags plus rows of the table ------
def tool_flag_values(program, define_own, names=()):
    """A fresh FlagValues with `define_own(flag_values)`'s flags, the data group and the table's
    flags `names` (e.g. "temperature"), each under a module name starting with `program`."""
    flag_values = flags.FlagValues()
    define_own(flag_values)
    define(flag_values, groups=("data",), module_prefix=program)
    define(flag_values, module_prefix=program, names=names)
    return flag_values


def data_config(flag_values):
    """The DataConfig of the data flags in `flag_values`."""
    tree = {}
    for group, name, path, *_ in _rows():
        if group == "data" and path.startswith("data.") and name in flag_values:
            value = flag_values[name].value
            tree[path.split(".", 1)[1]] = (value or None) if name in ZERO_IS_NONE else value
    return dataclasses.replace(RunConfig().data, **tree)


def flag_error(error, flag_values):
    """`error` (ValueError or FileExistsError) with the argument name its message starts with
    (`name` or `data_config.name`) written as the flag --name, if `flag_values` has that flag."""
    message = str(error)
    match = re.match(r"(?:data_config\.)?(\w+)", message)
    if match is None or match.group(1) not in flag_values:
        return error
    return type(error)(f"--{match.group(1)}{message[match.end():]}")
