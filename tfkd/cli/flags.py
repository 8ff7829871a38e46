"""absl flags shared by the command-line tools, and their mapping to config objects."""
import functools

from absl import flags

from tfkd import data, export, methods, training

FLAGS = flags.FLAGS


def once(define):
    """Makes a flag-defining function a no-op after its first call, so that several tools can be
    imported into one process (tests, tools built on others) without duplicate-flag errors."""
    done = []

    @functools.wraps(define)
    def define_once(*args, **kwargs):
        if not done:
            define(*args, **kwargs)
            done.append(True)
    return define_once


@once
def define_data_flags():
    flags.DEFINE_string("dataset", "synthetic",
                        "A tensorflow-datasets name, idx:DIR, npz:DIR, folder:DIR or synthetic.")
    flags.DEFINE_string("data_dir", None, "tensorflow-datasets data folder.")
    flags.DEFINE_float("validation_fraction", 0.1, "Fraction of train held out for validation.")
    flags.DEFINE_integer("train_limit", 0, "Stratified subset of the training split (0 = all).")
    flags.DEFINE_integer("test_limit", 0, "Stratified subset of the test split (0 = all).")
    flags.DEFINE_integer("seed", 0, "Seed for data splits, initialisation and shuffling.")
    flags.DEFINE_integer("synthetic_size", 20000, "synthetic: number of examples.")
    flags.DEFINE_integer("synthetic_dim", 100, "synthetic: input dimension d.")
    flags.DEFINE_integer("synthetic_classes", 20, "synthetic: number of classes C.")
    flags.DEFINE_integer("synthetic_superclasses", 4, "synthetic: number of super-classes S.")
    flags.DEFINE_float("class_similarity", 0.5, "synthetic: cosine of class to super-class.")
    flags.DEFINE_integer("difficulty", 4, "synthetic: number of sine terms M (0 = separable).")


@once
def define_training_flags():
    defaults = training.TrainConfig()
    flags.DEFINE_integer("epochs", defaults.epochs, "Distillation epochs.")
    flags.DEFINE_integer("batch_size", defaults.batch_size, "Global batch size.")
    flags.DEFINE_enum("optimizer", defaults.optimizer, training.OPTIMIZERS, "Optimizer.")
    flags.DEFINE_float("learning_rate", defaults.learning_rate, "Peak learning rate.")
    flags.DEFINE_enum("lr_schedule", defaults.lr_schedule, training.SCHEDULES,
                      "Learning-rate schedule.")
    flags.DEFINE_float("warmup_epochs", defaults.warmup_epochs, "Linear warm-up (cosine only).")
    flags.DEFINE_float("weight_decay", defaults.weight_decay, "Decoupled weight decay.")
    flags.DEFINE_enum("strategy", "default", training.STRATEGIES, "tf.distribute strategy.")
    flags.DEFINE_boolean("augment", False, "Pad-4 random crop and flip for images.")


@once
def define_method_flags():
    """One flag per option of every registered method."""
    for option in methods.all_options().values():
        if option.choices:
            flags.DEFINE_enum(option.name, option.default, option.choices, option.help)
        elif isinstance(option.default, bool):
            flags.DEFINE_boolean(option.name, option.default, option.help)
        elif isinstance(option.default, int):
            flags.DEFINE_integer(option.name, option.default, option.help)
        elif isinstance(option.default, float):
            flags.DEFINE_float(option.name, option.default, option.help)
        else:
            flags.DEFINE_string(option.name, option.default, option.help)


@once
def define_export_flags():
    flags.DEFINE_list("export", list(export.DEFAULT_FORMATS),
                      f"Export formats, a comma list of {', '.join(export.FORMATS)}.")


def data_config():
    return data.DataConfig(
        dataset=FLAGS.dataset, data_dir=FLAGS.data_dir,
        validation_fraction=FLAGS.validation_fraction,
        train_limit=FLAGS.train_limit or None, test_limit=FLAGS.test_limit or None,
        seed=FLAGS.seed, synthetic_size=FLAGS.synthetic_size, synthetic_dim=FLAGS.synthetic_dim,
        synthetic_classes=FLAGS.synthetic_classes,
        synthetic_superclasses=FLAGS.synthetic_superclasses,
        class_similarity=FLAGS.class_similarity, difficulty=FLAGS.difficulty)


def train_config(epochs=None):
    return training.TrainConfig(
        epochs=FLAGS.epochs if epochs is None else epochs, batch_size=FLAGS.batch_size,
        optimizer=FLAGS.optimizer, learning_rate=FLAGS.learning_rate,
        lr_schedule=FLAGS.lr_schedule, warmup_epochs=FLAGS.warmup_epochs,
        weight_decay=FLAGS.weight_decay)


def method_options(name):
    return {option.name: FLAGS[option.name].value for option in methods.METHODS.get(name).options}


def flag_values():
    """Every flag defined by tfkd itself (not absl's logging flags), as JSON values."""
    return {flag.name: flag.value
            for module, module_flags in FLAGS.flags_by_module_dict().items()
            if module.startswith("tfkd") for flag in module_flags}
