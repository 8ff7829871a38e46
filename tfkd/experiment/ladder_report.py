"""The teacher ladder's outputs: ladder.json, a Markdown table and a plot of student accuracy
against teacher size, uncalibrated and calibrated."""

import json
import os

import numpy as np

from tfkd.atomic import write_text

MODE_NAMES = {
    "none": "uncalibrated",
    "scale": "calibrated (scale)",
    "replace": "calibrated (replace, T = T*)",
}


def _accuracy(entry, seeds):
    if seeds > 1:  # mean ± sample standard deviation over the student seeds
        return f"{entry['mean']:.4f} ± {entry['std']:.4f}"
    return f"{entry['mean']:.4f}"


def markdown_table(results):
    """One row per teacher: accuracy, T*, test ECE/NLL before and after, student accuracies."""
    modes, seeds = results["modes"], results["seeds"]
    header = [
        "teacher",
        "params",
        "teacher acc",
        "T*",
        "ECE before",
        "ECE after",
        "NLL before",
        "NLL after",
    ] + [f"student, {MODE_NAMES[m]}" for m in modes]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in results["rows"]:
        cells = [
            row["teacher"],
            f"{row['params']:,}",
            f"{row['accuracy']:.4f}",
            f"{row['temperature']:.3f}",
            f"{row['ece_before']:.4f}",
            f"{row['ece_after']:.4f}",
            f"{row['nll_before']:.4f}",
            f"{row['nll_after']:.4f}",
        ]
        cells += [_accuracy(row["student"][m], seeds) for m in modes if m in row["student"]]
        lines.append("| " + " | ".join(cells) + " |")
    if "baseline" in results:
        lines.append(
            f"\nStudent {results['student']} trained alone: {_accuracy(results['baseline'], seeds)}"
        )
    return "\n".join(lines)


def plot(results, path):
    """Student test accuracy against teacher parameters (log scale), one line per mode, and the
    teachers' test ECE before and after calibration."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    rows = results["rows"]
    params = [row["params"] for row in rows]
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(11, 4.2))
    for mode, marker in zip(results["modes"], "osd^"):
        done = [row for row in rows if mode in row["student"]]
        left.errorbar(
            [r["params"] for r in done],
            [r["student"][mode]["mean"] for r in done],
            yerr=[r["student"][mode]["std"] for r in done],
            marker=marker,
            capsize=3,
            label=f"student, {MODE_NAMES[mode]}",
        )
    if "baseline" in results:
        left.axhline(
            results["baseline"]["mean"],
            color="gray",
            linestyle=":",
            label=f"{results['student']} alone",
        )
    for row in rows:
        left.annotate(
            row["teacher"],
            (row["params"], row["student"]["none"]["mean"]),
            textcoords="offset points",
            xytext=(0, -14),
            ha="center",
            fontsize=8,
        )
    left.set_xscale("log")
    left.set_xlabel("teacher parameters")
    left.set_ylabel("student test accuracy")
    left.set_title(
        f"{results['student']} distilled from each teacher ({results['seeds']} seed(s))",
        fontsize=10,
    )
    left.legend(fontsize=8)
    right.plot(params, [r["ece_before"] for r in rows], "o-", label="teacher ECE before")
    right.plot(params, [r["ece_after"] for r in rows], "s-", label="teacher ECE after (T*)")
    twin = right.twinx()
    twin.plot(params, [r["accuracy"] for r in rows], "d--", color="black", label="teacher accuracy")
    twin.set_ylabel("teacher test accuracy")
    right.set_xscale("log")
    right.set_xlabel("teacher parameters")
    right.set_ylabel("test ECE")
    right.set_title("teachers: calibration and accuracy", fontsize=10)
    handles = right.get_legend_handles_labels()
    twin_handles = twin.get_legend_handles_labels()
    right.legend(handles[0] + twin_handles[0], handles[1] + twin_handles[1], fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def _json_ready(value):
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def write(results, folder):
    """ladder.json, ladder.md and (given a row) ladder.png in `folder`."""
    write_text(
        os.path.join(folder, "ladder.json"), json.dumps(_json_ready(results), indent=2) + "\n"
    )
    sizes = results["sizes"]
    write_text(
        os.path.join(folder, "ladder.md"),
        f"Teacher ladder: {results['student']} student, --method={results['method']} on "
        f"{results['dataset']} (train/validation/test {sizes['train']}/"
        f"{sizes['validation']}/{sizes['test']}); ECE and NLL on the test split, T* "
        f"fitted on the validation split.\n\n{markdown_table(results)}\n\n"
        f"Command: `{results['command']}`\n",
    )
    if results["rows"]:
        plot(results, os.path.join(folder, "ladder.png"))
