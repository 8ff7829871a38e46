"""`bin/distill`: data -> teacher -> distilled student (-> baseline) -> evaluation -> export."""
import json
import os
import sys
import time

from absl import flags

from tfkd import data, export, methods, models, teachers, training
from tfkd.cli import common
from tfkd.cli import curriculum as curriculum_cli
from tfkd.cli import flags as tfkd_flags

FLAGS = flags.FLAGS

tfkd_flags.define_data_flags()
tfkd_flags.define_training_flags()
tfkd_flags.define_method_flags()
tfkd_flags.define_export_flags()
curriculum_cli.define_flags()
flags.DEFINE_string("teacher", "resnet20",
                    "A .keras file or SavedModel folder to load, or an architecture to train.")
flags.DEFINE_integer("teacher_epochs", 10, "Epochs when the teacher is trained here.")
flags.DEFINE_float("teacher_input_scale", 1.0,
                   "Multiply the [0, 1] inputs by this for a loaded teacher (255 for raw pixels).")
flags.DEFINE_string("student", "resnet8", "Student architecture.")
flags.DEFINE_string("method", "kd", "Distillation method.")
flags.DEFINE_boolean("baseline", False, "Also train the student alone with the same schedule.")
flags.DEFINE_string("output_dir", None,
                    "Output folder (default savedmodels/<dataset>-<method>-<student>-<time>).")
flags.DEFINE_boolean("overwrite", False, "Replace an existing, non-empty --output_dir.")
flags.DEFINE_integer("verbose", 2, "Keras verbosity: 0 silent, 1 progress bar, 2 one line/epoch.")


def default_output_dir():
    name = FLAGS.dataset.replace(":", "_").replace("/", "_").strip("_")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join("savedmodels", f"{name}-{FLAGS.method}-{FLAGS.student}-{stamp}")


def check_flags():
    for flag, registry in (("method", methods.METHODS), ("student", models.MODELS)):
        if FLAGS[flag].value not in registry:
            raise ValueError(f"--{flag}: {FLAGS[flag].value!r} is not a known {registry.kind}; "
                             f"known: {', '.join(registry.names())}")
    export.check_formats(FLAGS.export)
    if FLAGS.teacher_epochs < 1:
        raise ValueError("--teacher_epochs must be an integer >= 1")
    curriculum_cli.check_flags()


def get_teacher(bundle, strategy, config, work_dir, seconds):
    """Loads `--teacher=PATH` or trains `--teacher=ARCH`; returns (model, arch, trained)."""
    spec = FLAGS.teacher
    if os.path.exists(spec) or spec.endswith((".keras", "/")):
        with strategy.scope():
            teacher = teachers.rescale_inputs(teachers.load_model(spec), FLAGS.teacher_input_scale)
        return teacher, spec, False
    if spec not in models.MODELS:
        raise ValueError(f"--teacher: {spec!r} is neither a model file or SavedModel folder nor "
                         f"a known architecture; known: {', '.join(models.names())}")
    start = time.time()
    teacher = common.train_classifier(spec, bundle, strategy, config, "teacher", FLAGS.verbose,
                                      FLAGS.augment, FLAGS.seed, work_dir)
    seconds["teacher"] = time.time() - start
    export.save_keras(teacher, os.path.join(work_dir, "teacher.keras"))
    return teacher, spec, True


def run():
    """Runs the whole job from parsed flags; returns the results dictionary."""
    check_flags()
    data_config, train_config = tfkd_flags.data_config(), tfkd_flags.train_config()
    teacher_config = tfkd_flags.train_config(epochs=FLAGS.teacher_epochs)
    output_dir = FLAGS.output_dir or default_output_dir()
    common.check_output_dir(output_dir, FLAGS.overwrite)
    strategy = training.make_strategy(FLAGS.strategy)
    bundle = data.load(data_config)
    common.seed_everything(FLAGS.seed)
    method = methods.METHODS.get(FLAGS.method)
    seconds = {}
    with common.staging_dir(output_dir) as work_dir:
        teacher, teacher_arch = None, None
        if method.needs_teacher:
            teacher, teacher_arch, _ = get_teacher(bundle, strategy, teacher_config, work_dir,
                                                   seconds)
        start = time.time()
        student = common.distill(method, FLAGS.student, teacher, bundle, strategy, train_config,
                                 tfkd_flags.method_options(FLAGS.method), work_dir, FLAGS.verbose,
                                 FLAGS.augment, FLAGS.seed)
        seconds["distill"] = time.time() - start
        results = {"dataset": FLAGS.dataset, "method": FLAGS.method}
        if teacher is not None:
            results["teacher"] = {"arch": teacher_arch,
                                  "accuracy": common.accuracy(teacher, bundle.test),
                                  "params": int(teacher.count_params())}
        results["student"] = {"arch": FLAGS.student,
                              "accuracy": common.accuracy(student, bundle.test),
                              "params": int(student.count_params())}
        if FLAGS.baseline:
            start = time.time()
            alone = common.train_classifier(FLAGS.student, bundle, strategy, train_config,
                                            "baseline", FLAGS.verbose, FLAGS.augment, FLAGS.seed)
            seconds["baseline"] = time.time() - start
            results["baseline"] = {"accuracy": common.accuracy(alone, bundle.test)}
        results["exports"] = export.export_student(
            student, work_dir, FLAGS.export, test_data=(data.to_float(bundle.test[0]),
                                                        bundle.test[1]),
            verbose=FLAGS.verbose > 0)
        results["flags"] = tfkd_flags.flag_values()
        results["seconds"] = seconds
        with open(os.path.join(work_dir, "results.json"), "w") as handle:
            json.dump(results, handle, indent=2)
    common.print_summary(results, output_dir)
    return results


def main(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])} (flags start with --)")
    run()


if __name__ == "__main__":
    common.app_run(main)
