"""Plots and the results table of the function-matching experiment from bin/distill outputs.

    python docs/function_matching/plot.py RUNS_DIR

RUNS_DIR holds one bin/distill --output_dir per run (results.json + history.csv, recorded with
--test_every). Writes consistency.png, patience.png and results.json next to this file.
"""

import csv
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = ("fixed", "independent", "consistent", "function_matching")
COLOURS = {
    "none": "tab:grey",
    "fixed": "tab:orange",
    "independent": "tab:purple",
    "consistent": "tab:blue",
    "function_matching": "tab:green",
}


def read_run(folder):
    with open(os.path.join(folder, "results.json")) as handle:
        results = json.load(handle)
    with open(os.path.join(folder, "history.csv")) as handle:
        rows = list(csv.DictReader(handle))
    curve = {
        key: []
        for key in (
            "epoch",
            "test_accuracy",
            "test_agreement",
            "test_teacher_kl",
            "distillation_loss",
        )
    }
    for row in rows:
        if math.isnan(float(row.get("test_accuracy", "nan"))):
            continue
        curve["epoch"].append(int(row["epoch"]) + 1)
        for key in list(curve)[1:]:
            curve[key].append(float(row[key]))
    return results, curve


def summary(name, results, curve):
    return {
        "run": name,
        "teaching": results["teaching"]["teaching"],
        "epochs": results["flags"]["epochs"],
        "student_accuracy": results["student"]["accuracy"],
        "teacher_accuracy": results["teacher"]["accuracy"],
        "baseline_accuracy": results.get("baseline", {}).get("accuracy"),
        "test_agreement": curve["test_agreement"][-1],
        "test_teacher_kl": curve["test_teacher_kl"][-1],
        "final_train_distillation_loss": curve["distillation_loss"][-1],
        "distill_seconds": round(results["seconds"]["distill"]),
    }


def main(runs_dir):
    runs = {
        name: read_run(os.path.join(runs_dir, name))
        for name in sorted(os.listdir(runs_dir))
        if os.path.isfile(os.path.join(runs_dir, name, "results.json"))
    }
    table = [summary(name, *run) for name, run in runs.items()]
    teacher = table[0]["teacher_accuracy"]
    baseline = next((row["baseline_accuracy"] for row in table if row["baseline_accuracy"]), None)

    short = {
        results["teaching"]["teaching"]: curve
        for name, (results, curve) in runs.items()
        if name.startswith("modes-")
    }
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode in ("none", *MODES):
        if mode in short:
            curve = short[mode]
            left.plot(
                curve["epoch"], curve["test_accuracy"], "o-", ms=3, label=mode, color=COLOURS[mode]
            )
            right.plot(
                curve["epoch"],
                curve["test_teacher_kl"],
                "o-",
                ms=3,
                label=mode,
                color=COLOURS[mode],
            )
    left.axhline(teacher, color="tab:red", ls="--", label=f"teacher {teacher:.3f}")
    if baseline is not None:
        left.axhline(baseline, color="black", ls=":", label=f"student alone {baseline:.3f}")
    left.set(xlabel="epoch", ylabel="student test accuracy", title="Consistency")
    right.set(
        xlabel="epoch",
        ylabel="KL(teacher || student) on test images",
        yscale="log",
        title="Matching the teacher's function",
    )
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(os.path.join(HERE, "consistency.png"), dpi=85)

    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    for name, (results, curve) in runs.items():
        if name.startswith("patience-"):
            mode = results["teaching"]["teaching"]
            axis.plot(
                curve["epoch"],
                curve["test_accuracy"],
                "-",
                color=COLOURS[mode],
                label=f"{mode}, one {results['flags']['epochs']}-epoch cosine run",
            )
    for row in table:
        axis.plot(
            row["epochs"],
            row["student_accuracy"],
            "s",
            color=COLOURS[row["teaching"]],
            mec="black",
            ms=6,
        )
    axis.plot([], [], "s", color="white", mec="black", label="end of a schedule")
    axis.axhline(teacher, color="tab:red", ls="--", label=f"teacher {teacher:.3f}")
    if baseline is not None:
        axis.axhline(baseline, color="black", ls=":", label=f"student alone {baseline:.3f}")
    axis.set(xlabel="epoch", ylabel="student test accuracy", xscale="log", title="Patience")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(os.path.join(HERE, "patience.png"), dpi=85)

    with open(os.path.join(HERE, "results.json"), "w") as handle:
        json.dump(
            {"runs": table, "curves": {name: curve for name, (_, curve) in runs.items()}},
            handle,
            indent=1,
        )
    for row in table:
        print(row)


if __name__ == "__main__":
    main(sys.argv[1])
