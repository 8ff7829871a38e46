"""Derives the comparisons quoted in README.md from the committed results.json.

    python docs/function_matching/summarize.py

results.json (written by plot.py) holds every run's final numbers and its test curves; this
writes summary.json beside it: gaps between runs, the shape of the curves (range over the last
epochs, where KL stalls, the early dips) and the cost per run.
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def curve_range(curve, key, from_epoch):
    values = [v for e, v in zip(curve["epoch"], curve[key]) if e >= from_epoch]
    return [round(min(values), 4), round(max(values), 4)]


def lowest_after(curve, key, from_epoch):
    """(epoch, value) of the lowest point at or after `from_epoch`."""
    epoch, value = min(
        ((e, v) for e, v in zip(curve["epoch"], curve[key]) if e >= from_epoch),
        key=lambda pair: pair[1],
    )
    return {"epoch": epoch, "value": round(value, 4)}


def main():
    with open(os.path.join(HERE, "results.json")) as handle:
        results = json.load(handle)
    runs = {row["run"]: row for row in results["runs"]}
    curves = results["curves"]
    accuracy = {name: row["student_accuracy"] for name, row in runs.items()}
    patience = curves["patience-function_matching"]
    last = patience["epoch"][-1]
    seconds_20 = {
        name: row["distill_seconds"]
        for name, row in runs.items()
        if name.startswith("modes-") and name != "modes-fixed"
    }
    summary = {
        "source": "results.json",
        "consistent_minus_independent_points": round(
            100 * (accuracy["modes-consistent"] - accuracy["modes-independent"]), 2
        ),
        "independent_kl_range_from_epoch_12": curve_range(
            curves["modes-independent"], "test_teacher_kl", 12
        ),
        "consistent_kl_epoch_12_and_last": [
            round(
                curves["modes-consistent"]["test_teacher_kl"][
                    curves["modes-consistent"]["epoch"].index(12)
                ],
                4,
            ),
            round(curves["modes-consistent"]["test_teacher_kl"][-1], 4),
        ],
        "function_matching_by_schedule": {
            str(runs[name]["epochs"]): {
                "accuracy": accuracy[name],
                "test_teacher_kl": round(runs[name]["test_teacher_kl"], 4),
            }
            for name in (
                "schedule-function_matching-5",
                "modes-function_matching",
                "patience-function_matching",
            )
        },
        "patience_function_matching_last_15_epochs": {
            "from_epoch": last - 15,
            "to_epoch": last,
            "accuracy_range": curve_range(patience, "test_accuracy", last - 15),
        },
        "patience_function_matching_best": {
            "epoch": patience["epoch"][
                patience["test_accuracy"].index(max(patience["test_accuracy"]))
            ],
            "accuracy": max(patience["test_accuracy"]),
        },
        "early_dips": {
            "modes-none": lowest_after(curves["modes-none"], "test_accuracy", 6),
            "patience-fixed": lowest_after(curves["patience-fixed"], "test_accuracy", 6),
        },
        "distill_seconds_20_epochs_not_fixed_range": [
            min(seconds_20.values()),
            max(seconds_20.values()),
        ],
        "distill_seconds_fixed_20_epochs": runs["modes-fixed"]["distill_seconds"],
        "distill_seconds_total": sum(row["distill_seconds"] for row in runs.values()),
        "teacher_accuracy": runs["modes-none"]["teacher_accuracy"],
        "baseline_accuracy": runs["modes-none"]["baseline_accuracy"],
    }
    with open(os.path.join(HERE, "summary.json"), "w") as handle:
        json.dump(summary, handle, indent=1)
        handle.write("\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
