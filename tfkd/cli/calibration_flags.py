"""`--calibrate_teacher`: temperature-scale the teacher on the validation split before distilling.

Mode "scale" wraps the teacher in `TemperatureScaling(T*)`, so every logit-based method sees the
calibrated logits z / T* and then applies its own distillation temperature. Mode "replace" (the
paper's Eq. 3) leaves the teacher alone and sets the method's `temperature` option to T*.
"""
import os

import numpy as np
from absl import flags

from tfkd import calibration, data
from tfkd.cli.flags import once
from tfkd.targets import CALIBRATION_MODES

FLAGS = flags.FLAGS


@once
def define_bins_flag():
    flags.DEFINE_integer("calibration_bins", calibration.DEFAULT_BINS,
                         "Confidence bins of the ECE and the reliability diagrams.")


@once
def define_flags():
    """bin/distill's --calibrate_teacher, --calibration_mode and --calibration_bins."""
    define_bins_flag()
    flags.DEFINE_boolean("calibrate_teacher", False,
                         "Fit the teacher's temperature T* on the validation split (minimum NLL) "
                         "and distill from the calibrated teacher.")
    flags.DEFINE_enum("calibration_mode", "scale", CALIBRATION_MODES,
                      "scale: teacher logits / T*, then the distillation temperature; replace: "
                      "the distillation temperature becomes T* (the paper's Eq. 3).")


def check_flags(method, options, validation_size):
    """Raises one clear error when --calibrate_teacher cannot apply to this run."""
    if FLAGS.calibration_bins < 1:
        raise ValueError("--calibration_bins must be an integer >= 1")
    if not FLAGS.calibrate_teacher:
        return
    if not method.needs_teacher:
        raise ValueError(f"--calibrate_teacher: --method={FLAGS.method} uses no teacher")
    if method.multi_teacher:
        raise ValueError(f"--calibrate_teacher works with single-teacher methods, not "
                         f"--method={FLAGS.method}")
    if FLAGS.calibration_mode == "replace" and "temperature" not in options:
        raise ValueError(f"--calibration_mode=replace sets the distillation temperature, but "
                         f"--method={FLAGS.method} has no --temperature option; use "
                         "--calibration_mode=scale")
    if validation_size == 0:
        raise ValueError("--calibrate_teacher fits T* on the validation split, which is empty; "
                         "set --validation_fraction > 0")


def logits(model, split, batch_size=256):
    """model(to_float(x)) for a (x, y) split -> [n, K] float64 logits."""
    return np.asarray(model.predict(data.to_float(split[0]), batch_size=batch_size, verbose=0),
                      np.float64)


def measure(model, bundle, output_dir, num_bins, title):
    """Fits T* on `bundle.validation`, measures the test split before and after, writes
    reliability_before.png and reliability_after.png into `output_dir`; returns the summary."""
    validation_logits, test_logits = logits(model, bundle.validation), logits(model, bundle.test)
    summary = calibration.calibration_summary(validation_logits, bundle.validation[1],
                                              test_logits, bundle.test[1], num_bins)
    temperature = summary["temperature"]
    for when, t in (("before", 1.0), ("after", temperature)):
        calibration.reliability_diagram(
            calibration.softmax(test_logits, t), bundle.test[1],
            os.path.join(output_dir, f"reliability_{when}.png"), num_bins,
            title=f"{title}, test split, T = {t:.3f}")
    summary.update(fit_split="validation", eval_split="test")
    return summary


def calibrate_teacher(teacher, bundle, strategy, options, work_dir):
    """Applies --calibrate_teacher (a no-op without it).

    Returns:
      (teacher, options, summary): the teacher to distill from, the method options to use, and
      the calibration summary for results.json (None without --calibrate_teacher).
    """
    if not FLAGS.calibrate_teacher or teacher is None:
        return teacher, options, None
    print("Calibrating the teacher: fitting T* on the validation split", flush=True)
    summary = measure(teacher, bundle, work_dir, FLAGS.calibration_bins, "teacher")
    temperature = summary["temperature"]
    summary["mode"] = FLAGS.calibration_mode
    if FLAGS.calibration_mode == "scale":
        with strategy.scope():
            teacher = calibration.calibrate_model(teacher, temperature)
    else:
        options = {**options, "temperature": temperature}
    if "temperature" in options:
        summary["distillation_temperature"] = float(options["temperature"])
    print(f"  T* = {temperature:.4f}   test ECE {summary['ece_before']:.4f} -> "
          f"{summary['ece_after']:.4f}   NLL {summary['nll_before']:.4f} -> "
          f"{summary['nll_after']:.4f}", flush=True)
    return teacher, options, summary
