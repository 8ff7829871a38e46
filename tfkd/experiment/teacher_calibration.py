"""--calibrate_teacher: T* fitted on the validation split, measured on the test split, and the
teacher distilled as --calibration_mode says (`tfkd.calibration.calibrated_temperatures`)."""

import dataclasses
import os

import numpy as np

from tfkd import calibration, checkpoint, data, reliability
from tfkd.experiment import validation
from tfkd.methods import METHODS


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
            reliability.reliability_diagram(
                calibration.softmax(test_logits, t),
                bundle.test[1],
                os.path.join(output_dir, f"reliability_{when}.png"),
                num_bins,
                title=f"{title}, test split, T = {t:.3f}",
            )
    summary.update(fit_split="validation", eval_split="test")
    return summary


def calibrated_teacher(teacher, options, method, mode, calibration_temperature, strategy):
    """The teacher and the method's options that distill from `teacher` calibrated at T* under
    `mode` (`tfkd.calibration.calibrated_temperatures`): the teacher's logits divided by T*
    (a `calibrate_model` wrapper, built in `strategy`'s scope) and/or the method's
    `temperature` option set. Returns (teacher, options)."""
    temperature = validation.option(method, options, "temperature", undeclared=None)
    divisor, distill_temperature = calibration.calibrated_temperatures(
        mode, calibration_temperature, temperature
    )
    if divisor != 1.0:
        with strategy.scope():
            teacher = calibration.calibrate_model(teacher, divisor)
    if distill_temperature is not None:
        options = {**options, "temperature": distill_temperature}
    return teacher, options


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
    method = METHODS.get(config.method.name)
    teacher, options = calibrated_teacher(
        teacher, options, method, config.calibration.mode, temperature, strategy
    )
    distill_temperature = validation.option(method, options, "temperature", undeclared=None)
    if distill_temperature is not None:
        summary = {**summary, "distillation_temperature": float(distill_temperature)}
    print(
        f"  T* = {temperature:.4f}   test ECE {summary['ece_before']:.4f} -> "
        f"{summary['ece_after']:.4f}   NLL {summary['nll_before']:.4f} -> "
        f"{summary['nll_after']:.4f}",
        flush=True,
    )
    return teacher, options, summary
