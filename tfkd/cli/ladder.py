"""`bin/ladder`: the teacher ladder of "Rethinking knowledge distillation from the perspective of
model calibration" (its Tables 1-3).

For each teacher (an architecture trained here, or a saved model): test accuracy, T* fitted on the
validation split, ECE and NLL on the test split before and after temperature scaling, and the
test accuracy of the same student distilled from it uncalibrated and calibrated (one row per
`--ladder_modes` entry, `--ladder_seeds` students each). Writes ladder.json, ladder.md,
ladder.png, teachers/*.keras (reusable with --ladder_teachers=PATH,...) and reliability diagrams.

Takes every bin/distill flag (data, training, --method and its options, --student,
--teacher_epochs, --baseline, --output_dir, ...) except --teacher and --calibrate_teacher.
"""
import dataclasses
import os
import sys
import time

import numpy as np
from absl import flags

from tfkd import calibration, data, export, methods, models, teachers, training
from tfkd.cli import calibration_flags, common
from tfkd.cli import distill  # noqa: F401 - defines the bin/distill flags this tool shares
from tfkd.cli import flags as tfkd_flags
from tfkd.cli import ladder_report
from tfkd.targets import CALIBRATION_MODES

FLAGS = flags.FLAGS

flags.DEFINE_list("ladder_teachers", ["resnet8", "resnet14", "resnet20", "resnet32"],
                  "Teachers, smallest first: architectures to train or .keras/SavedModel paths.")
flags.DEFINE_list("ladder_modes", list(CALIBRATION_MODES),
                  "Calibration modes distilled besides the uncalibrated teacher: scale, replace.")
flags.DEFINE_integer("ladder_seeds", 1, "Students per (teacher, mode), seeds --seed, --seed+1, ...")


def check_flags(method, options):
    for name in ("teacher", "calibrate_teacher"):
        if FLAGS[name].present:
            raise ValueError(f"bin/ladder: --{name} does not apply; the teachers are "
                             "--ladder_teachers and the calibration modes --ladder_modes")
    for flag, registry in (("method", methods.METHODS), ("student", models.MODELS)):
        if FLAGS[flag].value not in registry:
            raise ValueError(f"--{flag}: {FLAGS[flag].value!r} is not a known {registry.kind}; "
                             f"known: {', '.join(registry.names())}")
    if not method.needs_teacher:
        raise ValueError(f"--method={FLAGS.method} uses no teacher; the ladder needs one")
    if not FLAGS.ladder_teachers:
        raise ValueError("--ladder_teachers must list at least one teacher")
    for spec in FLAGS.ladder_teachers:
        if spec not in models.MODELS and not os.path.exists(spec):
            raise ValueError(f"--ladder_teachers: {spec!r} is neither a known architecture nor "
                             f"an existing model path; known: {', '.join(models.names())}")
    unknown = [mode for mode in FLAGS.ladder_modes if mode not in CALIBRATION_MODES]
    if unknown:
        raise ValueError(f"--ladder_modes: unknown mode(s) {', '.join(unknown)}; known: "
                         f"{', '.join(CALIBRATION_MODES)}")
    if "replace" in FLAGS.ladder_modes and "temperature" not in options:
        raise ValueError(f"--ladder_modes=replace sets the distillation temperature, but "
                         f"--method={FLAGS.method} has no --temperature option")
    if FLAGS.ladder_seeds < 1:
        raise ValueError("--ladder_seeds must be an integer >= 1")
    if FLAGS.teacher_epochs < 1:
        raise ValueError("--teacher_epochs must be an integer >= 1")
    if FLAGS.calibration_bins < 1:
        raise ValueError("--calibration_bins must be an integer >= 1")


def get_teacher(spec, bundle, strategy, config, work_dir):
    """Trains architecture `spec` (saving it) or loads the model at path `spec`."""
    if spec in models.MODELS:
        common.seed_everything(FLAGS.seed)
        teacher = common.train_classifier(spec, bundle, strategy, config, f"teacher {spec}",
                                          FLAGS.verbose, FLAGS.augment, FLAGS.seed)
        export.save_keras(teacher, os.path.join(work_dir, "teachers", f"{spec}.keras"))
        return teacher, spec
    with strategy.scope():
        teacher = teachers.rescale_inputs(teachers.load_model(spec, "--ladder_teachers"),
                                          FLAGS.teacher_input_scale)
    name = os.path.splitext(os.path.basename(os.path.normpath(spec)))[0]
    return teacher, name


def distill_students(teacher, temperature, mode, bundle, strategy, method, options, config):
    """The student's test accuracy for each seed, distilled from `teacher` under `mode`."""
    if mode == "scale":
        with strategy.scope():
            teacher = calibration.calibrate_model(teacher, temperature)
    if mode == "replace":
        options = {**options, "temperature": temperature}
    # No per-epoch validation: it would run the teacher over the validation split every epoch
    # and the ladder only reports test accuracy.
    bundle = dataclasses.replace(bundle, validation=tuple(a[:0] for a in bundle.validation))
    accuracies = []
    for seed in range(FLAGS.seed, FLAGS.seed + FLAGS.ladder_seeds):
        common.seed_everything(seed)  # same student initialisation and batches in every mode
        student = common.distill(method, FLAGS.student, teacher, bundle, strategy, config,
                                 options, None, FLAGS.verbose, FLAGS.augment, seed)
        accuracies.append(common.accuracy(student, bundle.test))
    return accuracies


def summarise(accuracies):
    """Mean and sample standard deviation (0 for one seed) of the students' test accuracies."""
    spread = float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0
    return {"accuracies": accuracies, "mean": float(np.mean(accuracies)), "std": spread}


def run():
    """Runs the whole ladder from parsed flags; returns the results dictionary."""
    method = methods.METHODS.get(FLAGS.method) if FLAGS.method in methods.METHODS else None
    options = tfkd_flags.method_options(FLAGS.method) if method else {}
    check_flags(method, options)
    data_config, train_config = tfkd_flags.data_config(), tfkd_flags.train_config()
    teacher_config = tfkd_flags.train_config(epochs=FLAGS.teacher_epochs)
    output_dir = FLAGS.output_dir or os.path.join(
        "savedmodels", f"ladder-{FLAGS.student}-{time.strftime('%Y%m%d-%H%M%S')}")
    common.check_output_dir(output_dir, FLAGS.overwrite)
    strategy = training.make_strategy(FLAGS.strategy)
    bundle = data.load(data_config)
    if not len(bundle.validation[1]):
        raise ValueError("bin/ladder fits T* on the validation split, which is empty; set "
                         "--validation_fraction > 0")
    modes = ["none", *FLAGS.ladder_modes]
    results = {"dataset": FLAGS.dataset, "method": FLAGS.method, "student": FLAGS.student,
               "options": options, "modes": modes, "seeds": FLAGS.ladder_seeds,
               "sizes": {split: int(len(getattr(bundle, split)[1]))
                         for split in ("train", "validation", "test")},
               "command": " ".join(["bin/ladder", *sys.argv[1:]]), "rows": []}
    with common.staging_dir(output_dir) as work_dir:
        if FLAGS.baseline:
            accuracies = []
            for seed in range(FLAGS.seed, FLAGS.seed + FLAGS.ladder_seeds):
                common.seed_everything(seed)
                alone = common.train_classifier(FLAGS.student, bundle, strategy, train_config,
                                                "baseline", FLAGS.verbose, FLAGS.augment, seed)
                accuracies.append(common.accuracy(alone, bundle.test))
            results["baseline"] = summarise(accuracies)
        for spec in FLAGS.ladder_teachers:
            start = time.time()
            teacher, name = get_teacher(spec, bundle, strategy, teacher_config, work_dir)
            diagrams = os.path.join(work_dir, "reliability", name)
            os.makedirs(diagrams, exist_ok=True)
            summary = calibration_flags.measure(teacher, bundle, diagrams,
                                                FLAGS.calibration_bins, name)
            row = {"teacher": name, "params": int(teacher.count_params()), **summary,
                   "student": {}, "seconds": {"teacher": time.time() - start}}
            print(f"  {name}: accuracy {summary['accuracy']:.4f}  T* {summary['temperature']:.3f}"
                  f"  ECE {summary['ece_before']:.4f} -> {summary['ece_after']:.4f}", flush=True)
            for mode in modes:
                start = time.time()
                row["student"][mode] = summarise(distill_students(
                    teacher, summary["temperature"], mode, bundle, strategy, method, options,
                    train_config))
                row["seconds"][mode] = time.time() - start
                print(f"  {name} -> {FLAGS.student} ({mode}): "
                      f"{row['student'][mode]['mean']:.4f}", flush=True)
            results["rows"].append(row)
            ladder_report.write(results, work_dir)  # progress, readable in the staging folder
        results["flags"] = tfkd_flags.flag_values()
        ladder_report.write(results, work_dir)
    print(ladder_report.markdown_table(results))
    print(f"\n  output   {output_dir}: ladder.json, ladder.md, ladder.png, teachers/, "
          "reliability/")
    return results


def main(argv):
    common.no_positional_arguments(argv)
    run()


def entry():
    common.app_run(main)
