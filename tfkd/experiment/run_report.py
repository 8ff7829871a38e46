"""report.md: the page a person opens first in a run's folder, written beside results.json.

It holds the accuracy table (teacher, distilled student, student alone, each export format),
the learning curves of the student and the student alone on one plot (curves.png), the plots
the run made (calibration, teacher weights, curriculum), the exact command line, the time of
each phase and the tfkd, TensorFlow and Keras versions. Every file it links is in the folder.
"""

import csv
import json
import os
import shlex
import sys

REPORT = "report.md"
CURVES = "curves.png"
RESULTS = "results.json"
# Plots a run may make, with what each shows.
PLOTS = (
    ("reliability_before.png", "Teacher reliability before calibration"),
    ("reliability_after.png", "Teacher reliability after calibration (logits / T*)"),
    ("teacher_weights.png", "Per-example teacher weights on the training split"),
    ("curriculum.png", "Curriculum"),
)
# Files a run may leave, with what each holds.
FILES = (
    ("history.csv", "the distilled student's history"),
    ("baseline.csv", "the student alone's history"),
    ("teacher.csv", "the teacher's history (trained here)"),
    ("teacher.keras", "the teacher (trained here)"),
    ("export_report.md", "the export parity, size and latency report"),
    ("batch_values.csv", "per-batch values"),
)
PHASES = {"teacher": "teacher training", "distill": "distillation", "baseline": "student alone"}


def command_line(argv=None):
    """The command as typed: `tfkd distill ...`, `bin/distill ...` or `python -m tfkd ...`."""
    argv = list(sys.argv if argv is None else argv)
    program = argv[0] if argv else "python"
    if os.path.basename(program) == "tfkd":
        program = "tfkd"
    elif program.endswith(os.path.join("tfkd", "__main__.py")):
        program = "python -m tfkd"
    return " ".join([program, *(shlex.quote(arg) for arg in argv[1:])])


def versions():
    """{package: version} of tfkd, TensorFlow and Keras."""
    import keras
    import tensorflow as tf

    import tfkd

    return {"tfkd": tfkd.__version__, "TensorFlow": tf.__version__, "Keras": keras.__version__}


def read_history(path):
    """{column: [float per epoch]} of a history CSV, or None when the file is missing."""
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    return {
        key: [float(row[key]) for row in rows if row.get(key) not in (None, "")]
        for key in (rows[0] if rows else {})
    }


def plot_curves(histories, path):
    """curves.png: accuracy (training and validation) per epoch of each labelled history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.0))
    for k, (label, history) in enumerate(histories.items()):
        for key, style in (("accuracy", ":"), ("val_accuracy", "-")):
            values = history.get(key) or []
            if values:
                axis.plot(
                    range(1, len(values) + 1),
                    values,
                    style,
                    color=f"C{k}",
                    label=f"{label}, {'validation' if key.startswith('val') else 'training'}",
                )
    axis.set_xlabel("epoch")
    axis.set_ylabel("accuracy")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _accuracy(value):
    return "" if value is None else f"{value:.4f}"


def accuracy_rows(results, folder):
    """(model, architecture, test accuracy, validation accuracy, parameters) rows."""
    rows = []
    for k, teacher in enumerate(results.get("teachers", [])):
        rows.append(
            (f"teacher {k}", teacher["arch"], teacher.get("accuracy"), None, teacher.get("params"))
        )
    if "ensemble" in results:
        rows.append(("teachers' majority vote", "", results["ensemble"]["accuracy"], None, None))
    if "teacher" in results:
        teacher = results["teacher"]
        rows.append(
            ("teacher", teacher["arch"], teacher.get("accuracy"), None, teacher.get("params"))
        )
    student = results.get("student", {})
    rows.append(
        (
            "distilled student",
            student.get("arch", ""),
            student.get("accuracy"),
            student.get("val_accuracy"),
            student.get("params"),
        )
    )
    if "baseline" in results:
        baseline = results["baseline"]
        rows.append(
            (
                "student alone",
                student.get("arch", ""),
                baseline.get("accuracy"),
                baseline.get("val_accuracy"),
                student.get("params"),
            )
        )
    exports = results.get("exports", {})
    parity = {}
    if exports.get("report") and os.path.isfile(os.path.join(folder, exports["report"])):
        with open(os.path.join(folder, exports["report"])) as handle:
            parity = json.load(handle).get("formats", {})
    for name, file in exports.items():
        if name == "report" or not isinstance(file, str):
            continue
        accuracy = parity.get(name, {}).get("accuracy")
        if accuracy is None and name == "keras":
            accuracy = student.get("accuracy")
        if accuracy is None and name == "tflite":
            accuracy = exports.get("tflite_accuracy")
        rows.append((f"student as {name}", f"[{file}]({file})", accuracy, None, None))
    return rows


def markdown(results, folder, flags=(), command=None, versions_=None):
    """The text of report.md for the run in `folder` (its results dictionary `results`)."""
    title = f"# tfkd {results.get('method', '')} on {results.get('dataset', '')}"
    lines = [
        title,
        "",
        "| model | architecture | test accuracy | validation accuracy | parameters |",
        "|---|---|---|---|---|",
    ]
    for role, arch, accuracy, val_accuracy, params in accuracy_rows(results, folder):
        lines.append(
            f"| {role} | {arch} | {_accuracy(accuracy)} | {_accuracy(val_accuracy)} | "
            f"{'' if params is None else f'{params:,}'} |"
        )
    lines += ["", f"All numbers: [{RESULTS}]({RESULTS})."]
    if "calibration" in results:
        calibration = results["calibration"]
        lines += [
            "",
            f"Teacher calibration: T* = {calibration['temperature']:.4f}, test ECE "
            f"{calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f}.",
        ]
    figures = (
        [(CURVES, "Learning curves: distilled student and student alone")]
        if os.path.isfile(os.path.join(folder, CURVES))
        else []
    )
    figures += [
        (file, caption) for file, caption in PLOTS if os.path.isfile(os.path.join(folder, file))
    ]
    for file, caption in figures:
        lines += ["", f"## {caption}", "", f"![{caption}]({file})"]
    files = [(file, what) for file, what in FILES if os.path.exists(os.path.join(folder, file))]
    if files:
        lines += ["", "## Files", ""] + [f"- [{file}]({file}): {what}" for file, what in files]
    lines += ["", "## Command", "", "```", command or command_line(), "```"]
    if flags:
        lines += [
            "",
            "Every flag of the run (a flagfile that reproduces it):",
            "",
            "```",
            *flags,
            "```",
        ]
    seconds = results.get("seconds", {})
    if seconds:
        lines += ["", "## Time of each phase", "", "| phase | seconds |", "|---|---|"]
        lines += [
            f"| {PHASES.get(name, name.replace('_', ' '))} | {value:.1f} |"
            for name, value in seconds.items()
        ]
    lines += ["", "## Versions", ""]
    lines += [f"- {name} {version}" for name, version in (versions_ or versions()).items()]
    return "\n".join(lines) + "\n"


def flag_lines(values):
    """`--name=value` lines of a {flag: value} dictionary (results.json's "flags")."""
    lines = []
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            lines.append(f"--{name}" if value else f"--no{name}")
        elif isinstance(value, (list, tuple)):
            lines.append(f"--{name}={','.join(map(str, value))}")
        else:
            lines.append(f"--{name}={value}")
    return lines


def write(folder, results, flags=None, command=None):
    """Writes curves.png (when the run kept a history) and report.md in `folder`; returns the
    report's path. `flags` (command-line strings) default to results["flags"]."""
    if flags is None:
        flags = flag_lines(results.get("flags", {}))
    histories = {
        label: read_history(os.path.join(folder, file))
        for label, file in (("distilled student", "history.csv"), ("student alone", "baseline.csv"))
    }
    histories = {label: history for label, history in histories.items() if history}
    if histories:
        plot_curves(histories, os.path.join(folder, CURVES))
    path = os.path.join(folder, REPORT)
    with open(path, "w") as handle:
        handle.write(markdown(results, folder, flags, command))
    return path


def summary_line(results, output_dir):
    """One line: the three accuracies, then the path of report.md (any length)."""
    teacher = results.get("teacher", results.get("ensemble", {})).get("accuracy")
    student = results.get("student", {}).get("accuracy")
    alone = results.get("baseline", {}).get("accuracy")
    parts = [
        f"{name} {_accuracy(value) or '-':<8}"
        for name, value in (("teacher", teacher), ("student", student), ("student alone", alone))
    ]
    return f"  {'  '.join(parts)}report {os.path.join(output_dir, REPORT)}"
