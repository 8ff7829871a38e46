"""Each tool's `--help`, generated from its flag declarations and shipped as package data.

`tfkd <tool> --help` prints `tfkd/cli/help/<tool>.txt` without importing TensorFlow (the flag
declarations live in modules that do). Regenerate the files after changing a flag:

    python -m tfkd.cli.help_text

A test checks that the shipped text equals what the declarations print.
"""

import contextlib
import importlib
import io
import os
import sys

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "help")
# tool -> (module, summary); every module has main(argv), program name first.
TOOLS = {
    "distill": ("tfkd.cli.distill", "Distill a student from a teacher (the whole job)."),
    "tune": ("tfkd.cli.tune", "Search distillation hyperparameters with keras-tuner."),
    "export": ("tfkd.cli.export", "Export a trained classifier with a parity report."),
    "calibrate": ("tfkd.cli.calibrate", "Fit a classifier's temperature T* and plot reliability."),
    "ladder": ("tfkd.cli.ladder", "The teacher ladder, uncalibrated vs calibrated."),
    "analyze": ("tfkd.cli.analyze", "Class relationships and gradient rescaling of a teacher."),
    "bench": ("tfkd.cli.bench", "Distillation throughput benchmark."),
}
# Tools that take every `tfkd distill` flag, and so --config and --list_configs.
RECIPE_TOOLS = ("distill", "tune", "ladder")
HELP_WIDTH = "80"


def file(tool):
    return os.path.join(FOLDER, f"{tool}.txt")


def read(tool):
    """The shipped `--help` text of `tool`."""
    with open(file(tool)) as handle:
        return handle.read()


def generate(tool):
    """`tool --help` as the tool itself prints it (imports the tool, and so TensorFlow)."""
    module = importlib.import_module(TOOLS[tool][0])
    argv = [f"bin/{tool}", "--help"]
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH  # argparse wraps to the terminal otherwise
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output), contextlib.suppress(SystemExit):
            module.main(argv)
    finally:
        if saved is None:
            os.environ.pop("COLUMNS")
        else:
            os.environ["COLUMNS"] = saved
    return output.getvalue()


def write():
    """Writes every tool's help file; returns the tools whose text changed."""
    changed = []
    os.makedirs(FOLDER, exist_ok=True)
    for tool in TOOLS:
        text = generate(tool)
        if not os.path.exists(file(tool)) or read(tool) != text:
            changed.append(tool)
            with open(file(tool), "w") as handle:
                handle.write(text)
    return changed


if __name__ == "__main__":
    changed = write()
    print(f"regenerated: {', '.join(changed)}" if changed else "up to date", file=sys.stderr)
