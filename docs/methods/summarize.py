"""Collects the runs of docs/methods/run.sh into docs/methods/results.json and table.md.

Reads savedmodels/methods/<method>-seed<seed>/results.json (paths relative to the repository
root found from this file's location) and reports, per method, the student's test accuracy for
each seed and their mean and sample standard deviation (ddof=1), plus the difference of each
method from kd and from the student trained alone, paired by seed.
"""

import csv
import json
import pathlib
import statistics

ROOT = pathlib.Path(__file__).resolve().parents[2]
RUNS = ROOT / "savedmodels" / "methods"
HERE = pathlib.Path(__file__).resolve().parent
METHODS = ["alone", "kd", "dkd", "dist", "fitnet"]
SEEDS = [0, 1, 2]
LABELS = {
    "alone": "student alone (ls, epsilon 0)",
    "kd": "kd (Hinton et al. 2015)",
    "dkd": "dkd (Zhao et al. 2022)",
    "dist": "dist (Huang et al. 2022)",
    "fitnet": "fitnet (Romero et al. 2015)",
}


def mean_and_std(values):
    """Mean and sample standard deviation (None when fewer than two values)."""
    if not values:
        return None, None
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    return mean, std


def load_runs():
    """{method: {seed: results.json dict}} for the runs that finished."""
    runs = {}
    for method in METHODS:
        for seed in SEEDS:
            path = RUNS / f"{method}-seed{seed}" / "results.json"
            if path.exists():
                runs.setdefault(method, {})[seed] = json.loads(path.read_text())
    return runs


def last_epoch_train_accuracy(method, seed):
    """Training accuracy of the final epoch, from the run's history.csv."""
    with open(RUNS / f"{method}-seed{seed}" / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return float(rows[-1]["accuracy"])


def paired_differences(runs, method, reference):
    """Per-seed accuracy of method minus reference, over the seeds both finished."""
    both = sorted(set(runs.get(method, {})) & set(runs.get(reference, {})))
    return {
        seed: runs[method][seed]["student"]["accuracy"]
        - runs[reference][seed]["student"]["accuracy"]
        for seed in both
    }


def summarize(runs):
    summary = {"seeds": SEEDS, "methods": {}}
    # The student-alone runs load no teacher, so the setting is read from a distilled run.
    any_run = next(
        (r for method, by_seed in runs.items() if method != "alone" for r in by_seed.values()), None
    )
    if any_run is not None:
        flags = any_run["flags"]
        summary["setting"] = {
            "dataset": any_run["dataset"],
            "train_limit": flags["train_limit"],
            "validation_fraction": flags["validation_fraction"],
            "epochs": flags["epochs"],
            "batch_size": flags["batch_size"],
            "optimizer": flags["optimizer"],
            "learning_rate": flags["learning_rate"],
            "lr_schedule": flags["lr_schedule"],
            "student": any_run["student"]["arch"],
            "student_params": any_run["student"]["params"],
            "teacher": any_run["teacher"]["arch"],
            "teacher_params": any_run["teacher"]["params"],
            "teacher_test_accuracy": any_run["teacher"]["accuracy"],
        }
    for method in METHODS:
        by_seed = runs.get(method, {})
        accuracies = {seed: by_seed[seed]["student"]["accuracy"] for seed in sorted(by_seed)}
        val = {seed: by_seed[seed]["student"]["val_accuracy"] for seed in sorted(by_seed)}
        train = {seed: last_epoch_train_accuracy(method, seed) for seed in sorted(by_seed)}
        mean, std = mean_and_std(list(accuracies.values()))
        train_mean, _ = mean_and_std(list(train.values()))
        val_mean, val_std = mean_and_std(list(val.values()))
        entry = {
            "test_accuracy": {str(s): a for s, a in accuracies.items()},
            "test_accuracy_mean": mean,
            "test_accuracy_std": std,
            "val_accuracy": {str(s): a for s, a in val.items()},
            "val_accuracy_mean": val_mean,
            "val_accuracy_std": val_std,
            "train_accuracy_last_epoch": {str(s): a for s, a in train.items()},
            "train_accuracy_last_epoch_mean": train_mean,
            "seeds_finished": len(accuracies),
        }
        if by_seed:
            first = by_seed[min(by_seed)]
            entry["options"] = first["teaching"]["options"]
            entry["teacher_cache"] = first["teacher_cache"]["mode"]
            entry["distill_seconds"] = {
                str(s): r.get("seconds", {}).get("distill") for s, r in sorted(by_seed.items())
            }
        for reference in ("kd", "alone"):
            if method == reference:
                continue
            differences = paired_differences(runs, method, reference)
            d_mean, d_std = mean_and_std(list(differences.values()))
            entry[f"minus_{reference}"] = {
                "per_seed": {str(s): d for s, d in differences.items()},
                "mean": d_mean,
                "std": d_std,
                "seeds_better": sum(d > 0 for d in differences.values()),
            }
        summary["methods"][method] = entry
    return summary


def percent(value):
    return "n/a" if value is None else f"{100 * value:.2f}"


def signed(value):
    return "n/a" if value is None else f"{100 * value:+.2f}"


def table(summary):
    lines = [
        "| method | seed 0 | seed 1 | seed 2 | mean | std | minus kd (mean, seeds better) "
        "| minus alone (mean, seeds better) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method in METHODS:
        entry = summary["methods"][method]
        seeds = [percent(entry["test_accuracy"].get(str(s))) for s in SEEDS]
        cells = [
            LABELS[method],
            *seeds,
            percent(entry["test_accuracy_mean"]),
            percent(entry["test_accuracy_std"]),
        ]
        for reference in ("kd", "alone"):
            difference = entry.get(f"minus_{reference}")
            if difference is None:
                cells.append("-")
            else:
                n = len(difference["per_seed"])
                cells.append(f"{signed(difference['mean'])} ({difference['seeds_better']}/{n})")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Test accuracy (%) of the cnn_small student on the 10,000 Fashion-MNIST test images; "
        "std is the sample standard deviation over seeds; differences are paired by seed."
    )
    return "\n".join(lines) + "\n"


def main():
    summary = summarize(load_runs())
    (HERE / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (HERE / "table.md").write_text(table(summary))
    print(table(summary))


if __name__ == "__main__":
    main()
