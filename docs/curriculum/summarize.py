"""Tables and plots for docs/curriculum from the run folders written by run.sh.

Usage: PYTHONPATH=. python docs/curriculum/summarize.py OUT_DIR
Writes docs/curriculum/results.json, table.md, curriculum.png and reliance.png.
"""
import csv
import json
import os
import shutil
import sys

import keras
import numpy as np

from tfkd import data

HERE = os.path.dirname(os.path.abspath(__file__))
ROWS = [("Student-Unguided", "kd", "baseline"), ("Student-KD", "kd", "student"),
        ("Student-KD-CL", "kd_cl", "student"), ("Student-KD-CL'", "kd_cli", "student"),
        ("Student-KD-CL-SR", "kd_cl_sr", "student"), ("Student-KD-CL'-SR", "kd_cli_sr", "student"),
        ("Student-KD-CL paced", "kd_cl_paced", "student"),
        ("Student-KD-CL-SR paced", "kd_cl_sr_paced", "student"),
        ("Student-KD, fixed random order", "kd_random", "student"),
        ("Student-KD, random order paced", "kd_random_paced", "student"),
        ("Student-KD-CL, alpha = mean SR lambda", "kd_cl_alpha", "student")]
SEEDS = (0, 1, 2)


def test_loss(run_dir, flags):
    """Mean test cross-entropy of the saved student on the run's own test subset."""
    bundle = data.load(data.DataConfig(
        dataset=flags["dataset"], validation_fraction=flags["validation_fraction"],
        train_limit=flags["train_limit"] or None, test_limit=flags["test_limit"] or None,
        seed=flags["seed"]))
    student = keras.saving.load_model(os.path.join(run_dir, "student.keras"))
    logits = student.predict(data.to_float(bundle.test[0]), batch_size=500, verbose=0)
    loss = keras.losses.sparse_categorical_crossentropy(bundle.test[1], logits, from_logits=True)
    return float(np.mean(loss))


def history_column(run_dir, name):
    with open(os.path.join(run_dir, "history.csv")) as handle:
        return [float(row[name]) for row in csv.DictReader(handle)]


def collect(out):
    results = {}
    for label, prefix, role in ROWS:
        runs = []
        for seed in SEEDS:
            run_dir = os.path.join(out, f"{prefix}-{seed}")
            if not os.path.exists(os.path.join(run_dir, "results.json")):
                continue
            with open(os.path.join(run_dir, "results.json")) as handle:
                run = json.load(handle)
            entry = {"seed": seed, "accuracy": run[role]["accuracy"],
                     "seconds": run["seconds"]["baseline" if role == "baseline" else "distill"]}
            if role == "student":
                entry["test_loss"] = test_loss(run_dir, run["flags"])
            if run["method"] == "kd_sr" and role == "student":
                entry["mean_lambda_per_epoch"] = history_column(run_dir, "reliance")
            scores = os.path.join(run_dir, "curriculum.npz")
            if os.path.exists(scores):
                entry["teacher_train_accuracy"] = float(np.load(scores)["correct"].mean())
            entry["teacher_test_accuracy"] = run["teacher"]["accuracy"]
            runs.append(entry)
        if runs:
            results[label] = runs
    return results


def mean_std(values):
    values = np.asarray(values, np.float64)
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return values.mean(), std


def table(results):
    lines = ["| Experiment | Test accuracy (%) | Test loss (CE) | seeds | minutes per run |",
             "|---|---|---|---|---|"]
    for label, runs in results.items():
        accuracy = mean_std([100 * r["accuracy"] for r in runs])
        loss = ("n/a (not saved)" if "test_loss" not in runs[0]
                else "{:.3f} ± {:.3f}".format(*mean_std([r["test_loss"] for r in runs])))
        minutes = np.mean([r["seconds"] for r in runs]) / 60
        lines.append(f"| {label} | {accuracy[0]:.2f} ± {accuracy[1]:.2f} | {loss} | "
                     f"{len(runs)} | {minutes:.1f} |")
    return "\n".join(lines) + "\n"


def plot_reliance(out, path):
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axis = pyplot.subplots(figsize=(9, 3.4))
    for prefix, label in (("kd_cl_sr", "KD-CL-SR (easy to hard)"),
                          ("kd_cli_sr", "KD-CL'-SR (hard to easy)"),
                          ("kd_cl_sr_paced", "KD-CL-SR, linear pacing")):
        values = os.path.join(out, f"{prefix}-0", "batch_values.csv")
        if os.path.exists(values):
            with open(values) as handle:
                lam = [float(row["batch_reliance"]) for row in csv.DictReader(handle)]
            axis.plot(np.arange(1, len(lam) + 1), lam, lw=0.8, label=label)
    axis.set(xlabel="training step (batch of 128), 40 per epoch", ylabel="lambda (seed 0)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def main(out):
    results = collect(out)
    with open(os.path.join(HERE, "results.json"), "w") as handle:
        json.dump(results, handle, indent=1)
    with open(os.path.join(HERE, "table.md"), "w") as handle:
        handle.write(table(results))
    shutil.copy(os.path.join(out, "kd_cl-0", "curriculum.png"),
                os.path.join(HERE, "curriculum.png"))
    plot_reliance(out, os.path.join(HERE, "reliance.png"))
    print(table(results))


if __name__ == "__main__":
    main(sys.argv[1])
