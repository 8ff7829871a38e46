"""`bin/calibrate`: temperature-scale any trained classifier and report its calibration.

    bin/calibrate --model=teacher.keras --dataset=idx:/usr/share/datasets/fashion-mnist \
        --save=teacher_calibrated.keras

Fits T* on the validation split (minimum NLL), prints accuracy, ECE, classwise ECE, NLL and Brier
score on the test split before and after, writes calibration.json and the reliability diagrams
reliability_before.png / reliability_after.png into --report_dir, and with --save writes the
calibrated model (`.keras` file, or a SavedModel folder for any other path).
"""
import json
import os
import time

from absl import flags

from tfkd import calibration, data, export, teachers
from tfkd.experiment import phases
from tfkd.cli import common
from tfkd.cli import flags as tfkd_flags
from tfkd.io import write_text

FLAGS = flags.FLAGS

tfkd_flags.define_data_flags(names=("calibration_bins",))
tfkd_flags.define_shared(flags.DEFINE_string, "model", None, "The classifier to calibrate: a .keras file or SavedModel "
                    "folder giving logits.")
tfkd_flags.define_shared(flags.DEFINE_float, "model_input_scale", 1.0,
                   "Multiply the [0, 1] inputs by this (255 for models trained on raw pixels).")
tfkd_flags.define_shared(flags.DEFINE_string, "save", None, "Write the calibrated model here: PATH.keras, or a SavedModel "
                    "folder for any other path.")
tfkd_flags.define_shared(flags.DEFINE_string, "report_dir", None, "Folder for calibration.json and the reliability "
                    "diagrams (default savedmodels/calibrate-<model>-<time>); files in it are "
                    "replaced.")

COLUMNS = (("accuracy", "accuracy"), ("ece", "ECE"), ("classwise_ece", "classwise ECE"),
           ("nll", "NLL"), ("brier", "Brier"))


def check_model(model, bundle):
    """One clear error when the model's input or class count does not fit the data set."""
    inputs, outputs = tuple(model.input_shape[1:]), tuple(model.output_shape)
    if inputs != tuple(bundle.input_shape):
        raise ValueError(f"--model takes inputs of shape {inputs} but --dataset={FLAGS.dataset} "
                         f"has inputs of shape {tuple(bundle.input_shape)}")
    if outputs[-1] != bundle.num_classes:
        raise ValueError(f"--model gives {outputs[-1]} outputs (shape {outputs}) but "
                         f"--dataset={FLAGS.dataset} has {bundle.num_classes} classes")


def print_report(summary, sizes, report_dir, saved):
    print(f"\ncalibrate {FLAGS.model} on {FLAGS.dataset}: T* fitted on the validation split "
          f"({sizes['validation']} examples), measured on the test split ({sizes['test']})")
    print("  " + " " * 8 + "".join(f"{title:>15}" for _, title in COLUMNS))
    for when in ("before", "after"):
        values = [summary["accuracy"] if key == "accuracy" else summary[f"{key}_{when}"]
                  for key, _ in COLUMNS]
        print(f"  {when:<8}" + "".join(f"{value:>15.4f}" for value in values))
    print(f"  T* = {summary['temperature']:.4f}")
    print(f"  output   {report_dir}: calibration.json, reliability_before.png, "
          "reliability_after.png" + (f"; calibrated model {saved}" if saved else ""))


def run():
    """Calibrates --model from parsed flags; returns the summary dictionary."""
    if not FLAGS.model:
        raise ValueError("--model is required: a .keras file or SavedModel folder")
    if FLAGS.calibration_bins < 1:
        raise ValueError("--calibration_bins must be an integer >= 1")
    if FLAGS.model_input_scale <= 0:
        raise ValueError("--model_input_scale must be a number > 0")
    bundle = data.load(tfkd_flags.data_config())
    if not len(bundle.validation[1]):
        raise ValueError("T* is fitted on the validation split, which is empty; set "
                         "--validation_fraction > 0")
    model = teachers.rescale_inputs(teachers.load_model(FLAGS.model, "--model"),
                                    FLAGS.model_input_scale)
    check_model(model, bundle)
    name = os.path.splitext(os.path.basename(os.path.normpath(FLAGS.model)))[0]
    report_dir = FLAGS.report_dir or os.path.join(
        "savedmodels", f"calibrate-{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if os.path.exists(report_dir) and not os.path.isdir(report_dir):
        raise FileExistsError(f"--report_dir {report_dir} exists and is not a folder")
    os.makedirs(report_dir, exist_ok=True)
    summary = phases.measure_calibration(model, bundle, report_dir, FLAGS.calibration_bins, name)
    summary.update(model=FLAGS.model, dataset=FLAGS.dataset,
                   sizes={split: int(len(getattr(bundle, split)[1]))
                          for split in ("validation", "test")})
    if FLAGS.save:
        calibrated = calibration.calibrate_model(model, summary["temperature"])
        if FLAGS.save.endswith(".keras"):
            export.save_keras(calibrated, FLAGS.save)
        else:
            export.save_saved_model(calibrated, FLAGS.save)
        summary["saved"] = FLAGS.save
    write_text(os.path.join(report_dir, "calibration.json"), json.dumps(summary, indent=2))
    print_report(summary, summary["sizes"], report_dir, FLAGS.save)
    return summary


def main(argv):
    common.no_positional_arguments(argv)
    run()


def entry():
    common.app_run(main)
