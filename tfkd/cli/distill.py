"""`bin/distill`: data -> teacher -> distilled student (-> baseline) -> evaluation -> export."""
import json
import os
import sys
import time

from absl import flags

from tfkd import data, export, methods, models, teachers, training
from tfkd.cli import calibration_flags, common
from tfkd.cli import curriculum as curriculum_cli
from tfkd.cli import multi_teacher as multi_teacher_cli
from tfkd.cli import flags as tfkd_flags
from tfkd.cli import teaching as cli_teaching

FLAGS = flags.FLAGS

tfkd_flags.define_data_flags()
tfkd_flags.define_training_flags()
tfkd_flags.define_method_flags()
tfkd_flags.define_export_flags()
calibration_flags.define_flags()
cli_teaching.define_flags()
curriculum_cli.define_flags()
flags.DEFINE_string("teacher", "resnet20",
                    "A .keras file or SavedModel folder to load, or an architecture to train.")
flags.DEFINE_list("teachers", [], "Multi-teacher methods: a comma list, each a .keras file, a "
                  "SavedModel folder or an architecture to train (saved as teacher_<k>.keras).")
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


def get_teacher(bundle, strategy, config, work_dir, seconds, spec=None, name="teacher",
                flag="--teacher"):
    """Loads `--teacher=PATH` or trains `--teacher=ARCH`; returns (model, arch, trained).

    `spec`, `name` and `flag` serve the multi-teacher `--teachers` list (teacher_<k>).
    """
    spec = FLAGS.teacher if spec is None else spec
    if os.path.exists(spec) or spec.endswith((".keras", "/")):
        with strategy.scope():
            teacher = teachers.rescale_inputs(teachers.load_model(spec, flag),
                                              FLAGS.teacher_input_scale)
        return teacher, spec, False
    if spec not in models.MODELS:
        raise ValueError(f"{flag}: {spec!r} is neither a model file or SavedModel folder nor "
                         f"a known architecture; known: {', '.join(models.names())}")
    start = time.time()
    teacher = common.train_classifier(spec, bundle, strategy, config, name, FLAGS.verbose,
                                      FLAGS.augment, FLAGS.seed, work_dir)
    seconds[name] = time.time() - start
    export.save_keras(teacher, os.path.join(work_dir, f"{name}.keras"))
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
    teaching = cli_teaching.TeachingRun(FLAGS.method, method, tfkd_flags.method_options(
        FLAGS.method), bundle, data_config)
    options = teaching.options
    if FLAGS.curriculum != "none" and (method.multi_teacher or FLAGS.teaching == "fixed"
                                       or FLAGS.distill_dataset):
        raise ValueError(f"--curriculum={FLAGS.curriculum} orders the training split for one "
                         "teacher; it does not combine with multi-teacher methods, "
                         "--teaching=fixed or --distill_dataset")
    calibration_flags.check_flags(method, options, len(bundle.validation[1]))
    seconds = {}
    with common.staging_dir(output_dir) as work_dir:
        teacher, teacher_arch = None, None
        if method.multi_teacher:  # a list of teachers, each got as --teacher is
            specs = multi_teacher_cli.teacher_specs(FLAGS.teachers, FLAGS.method)
            got = [get_teacher(bundle, strategy, teacher_config, work_dir, seconds, spec,
                               f"teacher_{k}", "--teachers") for k, spec in enumerate(specs)]
            teacher, teacher_arch = [g[0] for g in got], [g[1] for g in got]
        elif method.needs_teacher:
            teacher, teacher_arch, _ = get_teacher(bundle, strategy, teacher_config, work_dir,
                                                   seconds)
        # --calibrate_teacher: T* on the validation split (tfkd.cli.calibration_flags).
        teacher, options, calibration = calibration_flags.calibrate_teacher(
            teacher, bundle, strategy, options, work_dir)
        start = time.time()
        student = common.distill(method, FLAGS.student, teacher,
                                 teaching.distill_bundle(bundle, teacher), strategy, train_config,
                                 options, work_dir, FLAGS.verbose, FLAGS.augment,
                                 FLAGS.seed, teaching=teaching)
        seconds["distill"] = time.time() - start
        results = {"dataset": FLAGS.dataset, "method": FLAGS.method,
                   "teaching": teaching.summary()}
        if method.multi_teacher:
            results.update(multi_teacher_cli.report(teacher, teacher_arch, bundle, FLAGS.method,
                                                    options, work_dir))
        elif teacher is not None:
            results["teacher"] = {"arch": teacher_arch,
                                  "accuracy": common.accuracy(teacher, bundle.test),
                                  "params": int(teacher.count_params())}
        if calibration is not None:
            results["calibration"] = calibration
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
            student, work_dir, FLAGS.export, test_data=bundle.test, verbose=FLAGS.verbose > 0,
            train_images=bundle.train[0])
        results["flags"] = tfkd_flags.flag_values()
        results["seconds"] = seconds
        with open(os.path.join(work_dir, "results.json"), "w") as handle:
            json.dump(results, handle, indent=2)
    common.print_summary(results, output_dir)
    return results


def main(argv):
    common.no_positional_arguments(argv)
    run()


if __name__ == "__main__":
    common.app_run(main)
