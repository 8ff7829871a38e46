"""Collects the runs of run.sh into results.json; derives summary.json and tables.md (printed).

Usage: python docs/multi_teacher/summarize.py [RUNS_DIR]   (default savedmodels/multi_teacher/runs)

Without RUNS_DIR on disk it reads the committed results.json instead, so summary.json (the paired
differences and weight spreads quoted in README.md) can be rebuilt from this folder alone.
"""

import csv
import glob
import json
import os
import re
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = {
    "aver": "AVER",
    "ebkd": "EBKD",
    "fitnet_mkd": "FitNet-MKD",
    "ca_mkd_logits": "CA-MKD weights, no L_inter (ablation)",
    "ca_mkd": "CA-MKD (equations)",
    "ca_mkd_official": "CA-MKD (official scaling)",
    "ca_mkd_code": "CA-MKD (authors' code: official scaling + gradient through w')",
    "kd_strong": "KD from the strong teacher alone (alpha 0.5)",
}


def load(runs):
    entries = []
    for path in sorted(glob.glob(os.path.join(runs, "*", "results.json"))):
        match = re.fullmatch(r"(\w+?)-(\w+)-seed(\d+)", os.path.basename(os.path.dirname(path)))
        with open(path) as handle:
            result = json.load(handle)
        with open(os.path.join(os.path.dirname(path), "history.csv")) as handle:
            last = list(csv.DictReader(handle))[-1]
        entries.append(
            {
                "case": match[1],
                "method": match[2],
                "seed": int(match[3]),
                "student": result["student"]["accuracy"],
                "baseline": result.get("baseline", {}).get("accuracy"),
                "teachers": [
                    t["accuracy"] for t in result.get("teachers", [result.get("teacher")])
                ],
                "ensemble": result.get("ensemble", {}).get("accuracy"),
                "mean_weights": result.get("teacher_weights", {}).get("mean"),
                # Mean w' over the last training epoch (CA-MKD's feature weights), if any.
                "last_epoch_feature_weights": [
                    float(last[f"teacher_{k}_feature_weight"])
                    for k in range(3)
                    if f"teacher_{k}_feature_weight" in last
                ],
                "seconds": result["seconds"],
            }
        )
    return entries


def mean_std(values):
    values = np.asarray(values, float) * 100
    return f"{values.mean():.2f} ± {values.std(ddof=1) if len(values) > 1 else 0:.2f}"


def table(entries, case):
    rows = [e for e in entries if e["case"] == case]
    if not rows:
        return ""
    seeds = sorted({e["seed"] for e in rows})
    lines = [
        "| | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std (n) |",
        "|---|" + "---|" * (len(seeds) + 1),
    ]

    def line(label, by_seed):
        cells = [f"{100 * by_seed[s]:.2f}" if s in by_seed else "" for s in seeds]
        values = list(by_seed.values())
        lines.append(
            f"| {label} | " + " | ".join(cells) + f" | {mean_std(values)} ({len(values)}) |"
        )

    first = {e["seed"]: e for e in rows}
    if case != "single":
        for k, name in enumerate(("strong", "medium", "weak" if case == "main" else "poor")):
            line(f"teacher {k} ({name})", {s: e["teachers"][k] for s, e in first.items()})
        line("teachers' majority vote", {s: e["ensemble"] for s, e in first.items()})
    baselines = {e["seed"]: e["baseline"] for e in entries if e["baseline"] is not None}
    line("student alone", baselines)
    for method in NAMES:
        by_seed = {e["seed"]: e["student"] for e in rows if e["method"] == method}
        if by_seed:
            line(NAMES[method], by_seed)
    return "\n".join(lines)


def weights_table(entries):
    lines = ["| case | weighting | teacher 0 | teacher 1 | teacher 2 |", "|---|---|---|---|---|"]
    for case in ("main", "poor"):
        for method in ("ebkd", "ca_mkd"):
            rows = [e for e in entries if e["case"] == case and e["method"] == method]
            if rows:
                weights = np.mean([e["mean_weights"] for e in rows], axis=0)
                lines.append(
                    f"| {case} | {method} | " + " | ".join(f"{w:.3f}" for w in weights) + " |"
                )
    return "\n".join(lines)


def feature_weights_table(entries):
    lines = ["| case | run | teacher 0 | teacher 1 | teacher 2 |", "|---|---|---|---|---|"]
    for e in entries:
        if e["last_epoch_feature_weights"]:
            lines.append(
                f"| {e['case']} | {e['method']} seed {e['seed']} | "
                + " | ".join(f"{w:.3f}" for w in e["last_epoch_feature_weights"])
                + " |"
            )
    return "\n".join(lines)


def by_seed(entries, case, method, key="student"):
    return {e["seed"]: e[key] for e in entries if e["case"] == case and e["method"] == method}


def paired(entries, first, second):
    """Per-seed accuracy of run `first` minus run `second` ((case, method) pairs), in points."""
    a, b = by_seed(entries, *first), by_seed(entries, *second)
    seeds = sorted(set(a) & set(b))
    values = [round(100 * (a[s] - b[s]), 2) for s in seeds]
    return {"seeds": seeds, "per_seed": values, "mean": round(float(np.mean(values)), 2)}


def mean_points(entries, case, method, key="student"):
    return round(100 * float(np.mean(list(by_seed(entries, case, method, key).values()))), 2)


def summary(entries):
    """The comparisons README.md quotes, each computed from the per-run entries."""
    baseline = {e["seed"]: e["baseline"] for e in entries if e["baseline"] is not None}
    means = {
        f"{case}/{method}": mean_points(entries, case, method)
        for case, method in sorted({(e["case"], e["method"]) for e in entries})
    }
    means["student_alone"] = round(100 * float(np.mean(list(baseline.values()))), 2)
    feature = {
        e["seed"]: e["last_epoch_feature_weights"]
        for e in entries
        if e["case"] == "main" and e["method"] == "ca_mkd"
    }
    spread = np.max(np.abs(np.array([feature[s] for s in feature]) - np.array(feature[0])))
    seed0 = {e["case"]: e["teachers"] for e in entries if e["seed"] == 0 and e["case"] != "single"}
    return {
        "source": "results.json",
        "mean_accuracy_pct": means,
        "teacher_accuracy_seed0_pct": {
            case: [round(100 * t, 2) for t in teachers] for case, teachers in seed0.items()
        },
        "paired_points": {
            "poor: ebkd - aver": paired(entries, ("poor", "ebkd"), ("poor", "aver")),
            "poor: ca_mkd_logits - ebkd": paired(
                entries, ("poor", "ca_mkd_logits"), ("poor", "ebkd")
            ),
            "poor: ca_mkd_logits - aver": paired(
                entries, ("poor", "ca_mkd_logits"), ("poor", "aver")
            ),
            "main: ebkd - aver": paired(entries, ("main", "ebkd"), ("main", "aver")),
            "main: ca_mkd_official - ca_mkd": paired(
                entries, ("main", "ca_mkd_official"), ("main", "ca_mkd")
            ),
            "main: ca_mkd_code - ca_mkd_official": paired(
                entries, ("main", "ca_mkd_code"), ("main", "ca_mkd_official")
            ),
        },
        "mean_difference_points": {
            "main: aver - fitnet_mkd": round(means["main/aver"] - means["main/fitnet_mkd"], 2),
            "main: aver - ca_mkd": round(means["main/aver"] - means["main/ca_mkd"], 2),
            "main: ca_mkd - fitnet_mkd": round(means["main/ca_mkd"] - means["main/fitnet_mkd"], 2),
            "student_alone - single/kd_strong": round(
                means["student_alone"] - means["single/kd_strong"], 2
            ),
        },
        "every_distilled_mean_below_student_alone": all(
            value < means["student_alone"]
            for name, value in means.items()
            if name != "student_alone"
        ),
        "ca_mkd_main_feature_weights_max_seed_difference": round(float(spread), 4),
        "recorded_fit_seconds": round(sum(sum(e["seconds"].values()) for e in entries)),
        "recorded_fit_minutes": round(sum(sum(e["seconds"].values()) for e in entries) / 60, 1),
        "runs": len(entries),
    }


def main():
    runs = sys.argv[1] if len(sys.argv) > 1 else "savedmodels/multi_teacher/runs"
    if os.path.isdir(runs):
        entries = load(runs)
        with open(os.path.join(HERE, "results.json"), "w") as handle:
            json.dump(entries, handle, indent=1)
        for case, method in (("main", "ca_mkd"), ("poor", "ca_mkd"), ("poor", "ebkd")):
            source = os.path.join(runs, f"{case}-{method}-seed0", "teacher_weights.png")
            if os.path.exists(source):
                shutil.copy(source, os.path.join(HERE, f"weights_{case}_{method}.png"))
    else:
        print(f"{runs} not found: using the committed results.json")
        with open(os.path.join(HERE, "results.json")) as handle:
            entries = json.load(handle)
    with open(os.path.join(HERE, "summary.json"), "w") as handle:
        json.dump(summary(entries), handle, indent=1)
        handle.write("\n")
    tables = (
        "## main\n\n"
        + table(entries, "main")
        + "\n\n## poor\n\n"
        + table(entries, "poor")
        + "\n\n## single-teacher KD (strong teacher)\n\n"
        + table(entries, "single")
        + "\n\n## mean teacher weights on the training split\n\n"
        + weights_table(entries)
        + "\n\n## CA-MKD feature weights w', last training epoch\n\n"
        + feature_weights_table(entries)
    )
    with open(os.path.join(HERE, "tables.md"), "w") as handle:
        handle.write(tables + "\n")
    print(tables)
    seconds = sum(sum(e["seconds"].values()) for e in entries)
    print(f"\n{len(entries)} runs, {seconds / 60:.1f} min of training")


if __name__ == "__main__":
    main()
