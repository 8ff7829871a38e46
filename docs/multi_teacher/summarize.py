"""Collects the runs of run.sh into results.json and Markdown tables (printed).

Usage: python docs/multi_teacher/summarize.py [RUNS_DIR]   (default savedmodels/multi_teacher/runs)
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
NAMES = {"aver": "AVER", "ebkd": "EBKD", "fitnet_mkd": "FitNet-MKD",
         "ca_mkd_logits": "CA-MKD weights, no L_inter (ablation)",
         "ca_mkd": "CA-MKD (equations)", "ca_mkd_official": "CA-MKD (official scaling)",
         "ca_mkd_code": "CA-MKD (authors' code: official scaling + gradient through w')",
         "kd_strong": "KD from the strong teacher alone (alpha 0.5)"}


def load(runs):
    entries = []
    for path in sorted(glob.glob(os.path.join(runs, "*", "results.json"))):
        match = re.fullmatch(r"(\w+?)-(\w+)-seed(\d+)", os.path.basename(os.path.dirname(path)))
        with open(path) as handle:
            result = json.load(handle)
        with open(os.path.join(os.path.dirname(path), "history.csv")) as handle:
            last = list(csv.DictReader(handle))[-1]
        entries.append({
            "case": match[1], "method": match[2], "seed": int(match[3]),
            "student": result["student"]["accuracy"],
            "baseline": result.get("baseline", {}).get("accuracy"),
            "teachers": [t["accuracy"] for t in result.get("teachers", [result.get("teacher")])],
            "ensemble": result.get("ensemble", {}).get("accuracy"),
            "mean_weights": result.get("teacher_weights", {}).get("mean"),
            # Mean w' over the last training epoch (CA-MKD's feature weights), if any.
            "last_epoch_feature_weights": [float(last[f"teacher_{k}_feature_weight"])
                                           for k in range(3)
                                           if f"teacher_{k}_feature_weight" in last],
            "seconds": result["seconds"]})
    return entries


def mean_std(values):
    values = np.asarray(values, float) * 100
    return f"{values.mean():.2f} ± {values.std(ddof=1) if len(values) > 1 else 0:.2f}"


def table(entries, case):
    rows = [e for e in entries if e["case"] == case]
    if not rows:
        return ""
    seeds = sorted({e["seed"] for e in rows})
    lines = ["| | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std (n) |",
             "|---|" + "---|" * (len(seeds) + 1)]

    def line(label, by_seed):
        cells = [f"{100 * by_seed[s]:.2f}" if s in by_seed else "" for s in seeds]
        values = list(by_seed.values())
        lines.append(f"| {label} | " + " | ".join(cells)
                     + f" | {mean_std(values)} ({len(values)}) |")

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
                lines.append(f"| {case} | {method} | " + " | ".join(f"{w:.3f}" for w in weights)
                             + " |")
    return "\n".join(lines)


def feature_weights_table(entries):
    lines = ["| case | run | teacher 0 | teacher 1 | teacher 2 |", "|---|---|---|---|---|"]
    for e in entries:
        if e["last_epoch_feature_weights"]:
            lines.append(f"| {e['case']} | {e['method']} seed {e['seed']} | "
                         + " | ".join(f"{w:.3f}" for w in e["last_epoch_feature_weights"]) + " |")
    return "\n".join(lines)


def main():
    runs = sys.argv[1] if len(sys.argv) > 1 else "savedmodels/multi_teacher/runs"
    entries = load(runs)
    with open(os.path.join(HERE, "results.json"), "w") as handle:
        json.dump(entries, handle, indent=1)
    for case, method in (("main", "ca_mkd"), ("poor", "ca_mkd"), ("poor", "ebkd")):
        source = os.path.join(runs, f"{case}-{method}-seed0", "teacher_weights.png")
        if os.path.exists(source):
            shutil.copy(source, os.path.join(HERE, f"weights_{case}_{method}.png"))
    print("## main\n\n" + table(entries, "main") + "\n\n## poor\n\n" + table(entries, "poor")
          + "\n\n## single-teacher KD (strong teacher)\n\n" + table(entries, "single")
          + "\n\n## mean teacher weights on the training split\n\n" + weights_table(entries)
          + "\n\n## CA-MKD feature weights w', last training epoch\n\n"
          + feature_weights_table(entries))
    seconds = sum(sum(e["seconds"].values()) for e in entries)
    print(f"\n{len(entries)} runs, {seconds / 60:.1f} min of training")


if __name__ == "__main__":
    main()
