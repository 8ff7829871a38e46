"""Derives the search numbers quoted in README.md from the committed trials.csv.

    python docs/tuning/summarize.py

trials.csv is bin/tune's own table of every trial. This writes trials_summary.json: the best
trial and its values, the trials grouped by learning rate (split at the widest gap in log learning
rate) with their validation accuracies, whether the search part of the hand-assembled
results.json agrees with trials.csv, and two differences taken from that hand-assembled file.
"""

import csv
import json
import math
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    with open(os.path.join(HERE, "trials.csv")) as handle:
        trials = [row for row in csv.DictReader(handle) if row["status"] == "COMPLETED"]
    for row in trials:
        for key in ("temperature", "alpha", "learning_rate", "val_accuracy", "seconds"):
            row[key] = float(row[key])
    best = max(trials, key=lambda row: row["val_accuracy"])
    by_rate = sorted(trials, key=lambda row: row["learning_rate"])
    gaps = [math.log(b["learning_rate"] / a["learning_rate"]) for a, b in zip(by_rate, by_rate[1:])]
    split = gaps.index(max(gaps)) + 1
    low, high = by_rate[:split], by_rate[split:]

    def group(rows):
        accuracies = [row["val_accuracy"] for row in rows]
        return {
            "trials": [row["trial"] for row in rows],
            "count": len(rows),
            "learning_rate_range": [
                round(rows[0]["learning_rate"], 6),
                round(rows[-1]["learning_rate"], 6),
            ],
            "val_accuracy_range": [round(min(accuracies), 4), round(max(accuracies), 4)],
            "val_accuracies": [round(a, 4) for a in accuracies],
        }

    with open(os.path.join(HERE, "results.json")) as handle:
        assembled = json.load(handle)
    search, runs = assembled["search"], assembled["runs"]
    summary = {
        "source": "trials.csv",
        "completed_trials": len(trials),
        "best_trial": best["trial"],
        "best_values": {
            key: round(best[key], 6) for key in ("temperature", "alpha", "learning_rate")
        },
        "best_val_accuracy": round(best["val_accuracy"], 5),
        "low_learning_rates": group(low),
        "high_learning_rates": group(high),
        "trial_seconds_total": round(sum(row["seconds"] for row in trials), 1),
        "results_json_search_matches_trials_csv": (
            search["best_trial"] == best["trial"]
            and abs(search["best_val_accuracy"] - best["val_accuracy"]) < 1e-9
            and all(
                abs(search["best_hyperparameters"][key] - best[key]) < 1e-9
                for key in ("temperature", "alpha", "learning_rate")
            )
        ),
        # From the hand-assembled results.json, not from trials.csv.
        "hand_assembled_differences_points": {
            "student_alone_minus_kd_default": round(
                100
                * (
                    runs["student_alone_default_learning_rate"]["test_accuracy"]
                    - runs["kd_default_values"]["test_accuracy"]
                ),
                2,
            ),
            "student_alone_best_rate_minus_kd_best": round(
                100
                * (
                    runs["student_alone_best_learning_rate"]["test_accuracy"]
                    - runs["kd_best_flags"]["test_accuracy"]
                ),
                2,
            ),
        },
    }
    with open(os.path.join(HERE, "trials_summary.json"), "w") as handle:
        json.dump(summary, handle, indent=1)
        handle.write("\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
