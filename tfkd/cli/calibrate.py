"""`bin/calibrate`: flags -> tfkd.experiment.tools.calibrate.

    bin/calibrate --model=teacher.keras --dataset=idx:/usr/share/datasets/fashion-mnist \
        --save=teacher_calibrated.keras

Fits T* on the validation split (minimum NLL), prints accuracy, ECE, classwise ECE, NLL and Brier
score on the test split before and after, writes calibration.json and the reliability diagrams
reliability_before.png / reliability_after.png into --report_dir, and with --save writes the
calibrated model (`.keras` file, or a SavedModel folder for any other path).
"""

from absl import flags

from tfkd.cli import common
from tfkd.cli import flags as flag_table
from tfkd.experiment import tools

PROGRAM = "bin/calibrate"
DOC = (
    "Temperature-scale a trained classifier and report its calibration: "
    "bin/calibrate --model=PATH --dataset=NAME [--save=PATH.keras]"
)
SHARED = ("calibration_bins",)
COLUMNS = (
    ("accuracy", "accuracy"),
    ("ece", "ECE"),
    ("classwise_ece", "classwise ECE"),
    ("nll", "NLL"),
    ("brier", "Brier"),
)


def define_calibrate_flags(flag_values):
    """bin/calibrate's own flags, under the module name "bin/calibrate"."""
    own = {"flag_values": flag_values, "module_name": PROGRAM}
    flags.DEFINE_string(
        "model",
        None,
        "The classifier to calibrate: a .keras file or SavedModel folder giving logits.",
        **own,
    )
    flags.DEFINE_float(
        "model_input_scale",
        1.0,
        "Multiply the [0, 1] inputs by this (255 for models trained on raw pixels).",
        **own,
    )
    flags.DEFINE_string(
        "save",
        None,
        "Write the calibrated model here: PATH.keras, or a SavedModel folder for any other path.",
        **own,
    )
    flags.DEFINE_string(
        "report_dir",
        None,
        "Folder for calibration.json and the reliability "
        "diagrams (default savedmodels/calibrate-<model>-<time>); files in it "
        "are replaced.",
        **own,
    )


def new_flag_values():
    return flag_table.tool_flag_values(PROGRAM, define_calibrate_flags, SHARED)


def arguments(flag_values):
    """Parsed flags -> the keyword arguments of tools.calibrate."""
    return {
        "model": flag_values.model,
        "data_config": flag_table.data_config(flag_values),
        "model_input_scale": flag_values.model_input_scale,
        "save": flag_values.save,
        "report_dir": flag_values.report_dir,
        "calibration_bins": flag_values.calibration_bins,
    }


def print_report(summary):
    sizes = summary["sizes"]
    print(
        f"\ncalibrate {summary['model']} on {summary['dataset']}: T* fitted on the validation "
        f"split ({sizes['validation']} examples), measured on the test split ({sizes['test']})"
    )
    print("  " + " " * 8 + "".join(f"{title:>15}" for _, title in COLUMNS))
    for when in ("before", "after"):
        values = [
            summary["accuracy"] if key == "accuracy" else summary[f"{key}_{when}"]
            for key, _ in COLUMNS
        ]
        print(f"  {when:<8}" + "".join(f"{value:>15.4f}" for value in values))
    print(f"  T* = {summary['temperature']:.4f}")
    saved = summary.get("saved")
    print(
        f"  output   {summary['report_dir']}: calibration.json, reliability_before.png, "
        "reliability_after.png" + (f"; calibrated model {saved}" if saved else "")
    )


def main(argv):
    """Runs bin/calibrate on `argv` (program name first); returns calibration.json's dictionary."""
    common.handle_help(argv, DOC, flag_values=new_flag_values())
    flag_values = flag_table.parse(argv[1:], new_flag_values(), PROGRAM)
    try:
        summary = tools.calibrate(**arguments(flag_values))
    except (ValueError, FileExistsError) as error:
        raise flag_table.flag_error(error, flag_values) from error
    print_report(summary)
    return summary


def entry():
    common.run_tool(main)
