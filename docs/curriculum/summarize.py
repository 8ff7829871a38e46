"""Tables and plots for docs/curriculum from the run folders written by run.sh.

Usage: python docs/curriculum/summarize.py [OUT_DIR]   (from the repository root)
With OUT_DIR, writes docs/curriculum/results.json, table.md, curriculum.png and reliance.png from
the run folders. Always (from results.json alone when OUT_DIR is not given) rebuilds table.md and
writes summary.json: the differences, ranges and ratios README.md quotes, and the paper's numbers
they are compared with.
"""

import csv
import json
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROWS = [
    ("Student-Unguided", "kd", "baseline"),
    ("Student-KD", "kd", "student"),
    ("Student-KD-CL", "kd_cl", "student"),
    ("Student-KD-CL'", "kd_cli", "student"),
    ("Student-KD-CL-SR", "kd_cl_sr", "student"),
    ("Student-KD-CL'-SR", "kd_cli_sr", "student"),
    ("Student-KD-CL paced", "kd_cl_paced", "student"),
    ("Student-KD-CL-SR paced", "kd_cl_sr_paced", "student"),
    ("Student-KD, fixed random order", "kd_random", "student"),
    ("Student-KD, random order paced", "kd_random_paced", "student"),
    ("Student-KD-CL, alpha = mean SR lambda", "kd_cl_alpha", "student"),
]
SEEDS = (0, 1, 2)


def test_loss(run_dir, flags):
    """Mean test cross-entropy of the saved student on the run's own test subset."""
    import keras

    from tfkd import data

    bundle = data.load(
        data.DataConfig(
            dataset=flags["dataset"],
            validation_fraction=flags["validation_fraction"],
            train_limit=flags["train_limit"] or None,
            test_limit=flags["test_limit"] or None,
            seed=flags["seed"],
        )
    )
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
            entry = {
                "seed": seed,
                "accuracy": run[role]["accuracy"],
                "seconds": run["seconds"]["baseline" if role == "baseline" else "distill"],
            }
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
    lines = [
        "| Experiment | Test accuracy (%) | Test loss (CE) | seeds | minutes per run |",
        "|---|---|---|---|---|",
    ]
    for label, runs in results.items():
        accuracy = mean_std([100 * r["accuracy"] for r in runs])
        loss = (
            "n/a (not saved)"
            if "test_loss" not in runs[0]
            else "{:.3f} ± {:.3f}".format(*mean_std([r["test_loss"] for r in runs]))
        )
        minutes = np.mean([r["seconds"] for r in runs]) / 60
        lines.append(
            f"| {label} | {accuracy[0]:.2f} ± {accuracy[1]:.2f} | {loss} | "
            f"{len(runs)} | {minutes:.1f} |"
        )
    return "\n".join(lines) + "\n"


def plot_reliance(out, path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axis = pyplot.subplots(figsize=(9, 3.4))
    for prefix, label in (
        ("kd_cl_sr", "KD-CL-SR (easy to hard)"),
        ("kd_cli_sr", "KD-CL'-SR (hard to easy)"),
        ("kd_cl_sr_paced", "KD-CL-SR, linear pacing"),
    ):
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


# Khan, Nadiminty and Amin, Table 2: validation accuracy (%) of the ResNet-18 students on CIFAR-10.
PAPER_CIFAR10 = {
    "Student-Unguided": 77.3,
    "Student-KD": 79.6,
    "Student-KD-CL": 80.6,
    "Student-KD-CL'": 79.7,
    "Student-KD-CL-SR": 80.0,
    "Student-KD-CL'-SR": 77.0,
}
TRAIN_EXAMPLES = 5000  # run.sh's --train_limit


def summary(results):
    """The comparisons of README.md, each computed from the per-seed entries of results.json."""
    accuracy = {label: [100 * r["accuracy"] for r in runs] for label, runs in results.items()}
    mean = {label: float(np.mean(values)) for label, values in accuracy.items()}
    kd = "Student-KD"
    paced, paced_sr = "Student-KD-CL paced", "Student-KD-CL-SR paced"
    teacher_runs = [r for runs in results.values() for r in runs if "teacher_train_accuracy" in r]
    train_accuracy = sorted({r["teacher_train_accuracy"] for r in teacher_runs})
    test_accuracy = sorted({r["teacher_test_accuracy"] for runs in results.values() for r in runs})
    sr = {r["seed"]: r["mean_lambda_per_epoch"] for r in results["Student-KD-CL-SR"]}
    sr_paced = {r["seed"]: r["mean_lambda_per_epoch"] for r in results[paced_sr]}
    alone = {r["seed"]: r["seconds"] for r in results["Student-Unguided"]}
    kd_seconds = {r["seed"]: r["seconds"] for r in results[kd]}
    first_six = list(results)[:6]
    return {
        "source": "results.json",
        "mean_accuracy_pct": {label: round(value, 2) for label, value in mean.items()},
        "minus_kd_points": {
            label: round(value - mean[kd], 2) for label, value in mean.items() if label != kd
        },
        "per_seed_accuracy_pct": {
            label: [round(v, 2) for v in values] for label, values in accuracy.items()
        },
        "paced_kd_cl_seed_range_pct": [
            round(min(accuracy[paced]), 2),
            round(max(accuracy[paced]), 2),
        ],
        "kd_seed_range_pct": [round(min(accuracy[kd]), 2), round(max(accuracy[kd]), 2)],
        "every_paced_seed_above_every_kd_seed": min(accuracy[paced]) > max(accuracy[kd]),
        "paced_minus_paced_sr_points": round(mean[paced] - mean[paced_sr], 2),
        "teacher_test_accuracy_range_pct": [
            round(100 * test_accuracy[0], 2),
            round(100 * test_accuracy[-1], 2),
        ],
        "teacher_train_accuracy_range_pct": [
            round(100 * train_accuracy[0], 2),
            round(100 * train_accuracy[-1], 2),
        ],
        "teacher_train_mistakes_range": [
            round(TRAIN_EXAMPLES * (1 - train_accuracy[-1])),
            round(TRAIN_EXAMPLES * (1 - train_accuracy[0])),
        ],
        "sr_mean_lambda_per_seed": [round(sr[s][0], 3) for s in sorted(sr)],
        "sr_mean_lambda_over_seeds": round(float(np.mean([sr[s][0] for s in sr])), 3),
        "sr_paced_first_epoch_lambda_per_seed": [
            round(sr_paced[s][0], 3) for s in sorted(sr_paced)
        ],
        "sr_paced_last_epoch_lambda_per_seed": [
            round(sr_paced[s][-1], 3) for s in sorted(sr_paced)
        ],
        "kd_over_student_alone_seconds_ratio_per_seed": [
            round(kd_seconds[s] / alone[s], 1) for s in sorted(alone)
        ],
        "recorded_seconds_all_student_runs": round(
            sum(r["seconds"] for runs in results.values() for r in runs)
        ),
        "recorded_seconds_first_six_rows": round(
            sum(r["seconds"] for label in first_six for r in results[label])
        ),
        "paper_cifar10_pct": PAPER_CIFAR10,
        "paper_cifar10_minus_kd_points": {
            label: round(value - PAPER_CIFAR10[kd], 1)
            for label, value in PAPER_CIFAR10.items()
            if label != kd
        },
    }


def main(out=None):
    if out is not None:
        results = collect(out)
        with open(os.path.join(HERE, "results.json"), "w") as handle:
            json.dump(results, handle, indent=1)
        shutil.copy(
            os.path.join(out, "kd_cl-0", "curriculum.png"), os.path.join(HERE, "curriculum.png")
        )
        plot_reliance(out, os.path.join(HERE, "reliance.png"))
    else:
        with open(os.path.join(HERE, "results.json")) as handle:
            results = json.load(handle)
    with open(os.path.join(HERE, "table.md"), "w") as handle:
        handle.write(table(results))
    with open(os.path.join(HERE, "summary.json"), "w") as handle:
        json.dump(summary(results), handle, indent=1)
        handle.write("\n")
    print(table(results))


if __name__ == "__main__":
    main(*sys.argv[1:2])
