"""Derives the comparisons quoted in README.md from the committed ladder results.

    python docs/calibration/summarize.py

Reads ladder_3seeds.json (run 2) and ladder_seed0.json (run 1) next to this file and writes
summary.json beside them: per-teacher calibration numbers, paired per-seed differences between
students, and the comparison with the values the paper reports (copied below from its tables).
Accuracies and differences are in percent / percentage points.
"""

import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

# "Rethinking Knowledge Distillation from the Perspective of Model Calibration", CIFAR-10.
# Table 2: teacher ResNet-34 / 50 / 101 / 152, temperature scaling fitted on validation NLL.
PAPER_TEACHERS = {
    "resnet34": {"t_star": 1.285, "ece_before": 0.035, "ece_after": 0.020},
    "resnet50": {"t_star": 1.393, "ece_before": 0.031, "ece_after": 0.014},
    "resnet101": {"t_star": 1.386, "ece_before": 0.034, "ece_after": 0.021},
    "resnet152": {"t_star": 1.473, "ece_before": 0.033, "ece_after": 0.015},
}
# Table 3: student accuracy (columns ResNet-18 / 34 / 50 / 101) per teacher, uncalibrated and
# calibrated; "-" cells of the paper are left out.
PAPER_STUDENTS = {
    "resnet50": ([0.9561, 0.9589], [0.9564, 0.9559]),
    "resnet101": ([0.9539, 0.9557, 0.9561], [0.9554, 0.9569, 0.9591]),
    "resnet152": ([0.9541, 0.9569, 0.9551, 0.9564], [0.9551, 0.9577, 0.9593, 0.9592]),
}


def load(name):
    with open(os.path.join(HERE, name)) as handle:
        return json.load(handle)


def points(values):
    return [round(100 * float(v), 2) for v in values]


def teacher_rows(ladder):
    rows = []
    for row in ladder["rows"]:
        rows.append(
            {
                "teacher": row["teacher"],
                "params": row["params"],
                "accuracy_pct": round(100 * row["accuracy"], 2),
                "t_star": round(row["temperature"], 3),
                "t_star_squared": round(row["temperature"] ** 2, 2),
                "ece_before_pct": round(100 * row["ece_before"], 2),
                "ece_after_pct": round(100 * row["ece_after"], 2),
                "nll_drop": round(row["nll_before"] - row["nll_after"], 4),
            }
        )
    return rows


def student_comparisons(ladder):
    rows = {row["teacher"]: row["student"] for row in ladder["rows"]}
    accuracies = {t: {mode: np.array(s[mode]["accuracies"]) for mode in s} for t, s in rows.items()}
    smallest, largest = ladder["rows"][0]["teacher"], ladder["rows"][-1]["teacher"]
    replace_minus_none = {t: points(a["replace"] - a["none"]) for t, a in accuracies.items()}
    all_differences = [d for values in replace_minus_none.values() for d in values]
    none_means = [a["none"].mean() for a in accuracies.values()]
    baseline = np.array(ladder["baseline"]["accuracies"])
    return {
        "student_mean_pct": {
            t: {mode: round(100 * a[mode].mean(), 2) for mode in a} for t, a in accuracies.items()
        },
        "student_std_pct": {
            t: {mode: round(100 * a[mode].std(ddof=1), 2) for mode in a}
            for t, a in accuracies.items()
        },
        f"{largest}_minus_{smallest}_per_seed_points": {
            mode: points(accuracies[largest][mode] - accuracies[smallest][mode])
            for mode in accuracies[largest]
        },
        "replace_minus_none_per_seed_points": replace_minus_none,
        "replace_minus_none_mean_points": {
            t: round(float(np.mean(v)), 2) for t, v in replace_minus_none.items()
        },
        "replace_minus_none_range_points": [min(all_differences), max(all_differences)],
        "uncalibrated_student_mean_over_teachers_pct": round(100 * float(np.mean(none_means)), 2),
        "baseline_mean_pct": round(100 * float(baseline.mean()), 2),
        "kd_gain_over_baseline_points": round(
            100 * float(np.mean(none_means) - baseline.mean()), 2
        ),
        "binomial_standard_error_points": round(
            100
            * float(
                np.sqrt(np.mean(none_means) * (1 - np.mean(none_means)) / ladder["sizes"]["test"])
            ),
            2,
        ),
    }


def paper_comparison(rows):
    t_stars = [t["t_star"] for t in PAPER_TEACHERS.values()]
    eces = [round(100 * t["ece_before"], 2) for t in PAPER_TEACHERS.values()]
    differences = [
        round(100 * (c - u), 2)
        for u_row, c_row in PAPER_STUDENTS.values()
        for u, c in zip(u_row, c_row)
    ]
    largest = rows[-1]
    return {
        "teachers": PAPER_TEACHERS,
        "t_star_range": [min(t_stars), max(t_stars)],
        "ece_before_range_pct": [min(eces), max(eces)],
        "ours": largest["teacher"],
        "ours_t_star_in_paper_range": min(t_stars) <= largest["t_star"] <= max(t_stars),
        "ours_ece_before_in_paper_range": min(eces) <= largest["ece_before_pct"] <= max(eces),
        "calibrated_minus_uncalibrated_student_points": differences,
        "calibrated_minus_uncalibrated_range_points": [min(differences), max(differences)],
        "calibrated_better_count": sum(d > 0 for d in differences),
        "pairs": len(differences),
    }


def seconds(ladder):
    """Training time recorded per run (teacher training and every student fit; no start-up)."""
    total = 0.0
    for row in ladder["rows"]:
        total += sum(row["seconds"].values())
    return round(total)


def main():
    run2, run1 = load("ladder_3seeds.json"), load("ladder_seed0.json")
    rows = teacher_rows(run2)
    one_seed = {row["teacher"]: row["student"] for row in run1["rows"]}
    summary = {
        "sources": ["ladder_3seeds.json", "ladder_seed0.json"],
        "teachers": rows,
        "teacher_accuracy_spread_points": round(
            max(r["accuracy_pct"] for r in rows) - min(r["accuracy_pct"] for r in rows), 2
        ),
        "run2_students": student_comparisons(run2),
        "run1_scale_minus_none_points": {
            t: round(100 * (s["scale"]["mean"] - s["none"]["mean"]), 2) for t, s in one_seed.items()
        },
        "recorded_training_seconds": {"run1": seconds(run1), "run2": seconds(run2)},
        "paper": paper_comparison(rows),
    }
    with open(os.path.join(HERE, "summary.json"), "w") as handle:
        json.dump(summary, handle, indent=1)
        handle.write("\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
