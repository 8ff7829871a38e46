#!/usr/bin/env python3
"""Collects the results.json files written by docs/partial/run.sh into tables.

  python docs/partial/aggregate.py RUNS_DIR DOCS_DIR

writes DOCS_DIR/results.json (every accuracy per seed, plus mean and std) and
DOCS_DIR/tables.md (test accuracy in %, mean +- sample standard deviation over the seeds).
"""

import glob
import json
import os
import sys

import numpy as np

SYNTHETIC_ROWS = (
    ("Teacher", "kd", "teacher"),
    ("Student", "kd", "baseline"),
    ("KD", "kd", "student"),
    ("KD-pt", "kd_pt", "student"),
    ("KD-sim", "kd_sim", "student"),
)
FASHION_ROWS = (
    ("Teacher", "kd", "teacher"),
    ("Student", "kd", "baseline"),
    ("LS", "ls", "student"),
    ("KD", "kd", "student"),
    ("KD-pt", "kd_pt", "student"),
    ("KD-sim", "kd_sim", "student"),
    ("KD-pt+sim", "kd_pt_sim", "student"),
    ("KD-topk", "kd_topk", "student"),
    ("KD-rel", "kd_rel", "student"),
)


def _accuracy(seed_dir, run, role):
    path = os.path.join(seed_dir, run, "results.json")
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        return 100.0 * json.load(handle)[role]["accuracy"]


def _collect(setting_dir, rows):
    """{row name: {"seeds": {seed: accuracy}, "mean": m, "std": s}} for one setting."""
    seed_dirs = sorted(glob.glob(os.path.join(setting_dir, "seed*")))
    table = {}
    for name, run, role in rows:
        values = {os.path.basename(d)[4:]: _accuracy(d, run, role) for d in seed_dirs}
        values = {seed: value for seed, value in values.items() if value is not None}
        found = np.array(list(values.values()))
        table[name] = {
            "seeds": values,
            "mean": float(found.mean()) if found.size else None,
            "std": float(found.std(ddof=1)) if found.size > 1 else None,
        }
    return table


def _paired_gains(table, rows):
    """Per-seed accuracy minus the student alone's on the same seed: {row: {mean, std}}.

    Each synthetic seed draws its own data set, whose difficulty varies much more than the
    methods differ; the paired difference removes that shared part.
    """
    base = table["Student"]["seeds"]
    gains = {}
    for name, _, _ in rows:
        if name in ("Student", "Teacher"):
            continue
        common = sorted(set(base) & set(table[name]["seeds"]))
        values = np.array([table[name]["seeds"][seed] - base[seed] for seed in common])
        gains[name] = {
            "seeds": dict(zip(common, values.tolist())),
            "mean": float(values.mean()) if values.size else None,
            "std": float(values.std(ddof=1)) if values.size > 1 else None,
        }
    return gains


def _cell(entry):
    if entry["mean"] is None:
        return "-"
    if entry["std"] is None:
        return f"{entry['mean']:.2f} (1 seed)"
    return f"{entry['mean']:.2f} ± {entry['std']:.2f}"


def _per_seed_markdown(settings, rows):
    """One column per (setting, seed): the paired comparisons behind the means."""
    columns = [
        (name, seed)
        for name, table in settings.items()
        for seed in sorted(table["Student"]["seeds"])
    ]
    lines = [
        "| Method | " + " | ".join(f"{name} seed {seed}" for name, seed in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for row, _, _ in rows:
        cells = [settings[name][row]["seeds"].get(seed) for name, seed in columns]
        lines.append(
            f"| {row} | "
            + " | ".join("-" if value is None else f"{value:.2f}" for value in cells)
            + " |"
        )
    return "\n".join(lines)


def _markdown(columns, rows):
    header = "| Method | " + " | ".join(columns) + " |"
    lines = [header, "|---" * (len(columns) + 1) + "|"]
    for name, _, _ in rows:
        if any(name in table for table in columns.values()):
            lines.append(
                f"| {name} | "
                + " | ".join(
                    _cell(table[name]) if name in table else "" for table in columns.values()
                )
                + " |"
            )
    return "\n".join(lines)


def main(runs_dir, docs_dir):
    results = {
        "synthetic": {},
        "fashion_mnist": None,
        "synthetic_gains": {},
        "fashion_mnist_gains": None,
    }
    for setting in sorted(glob.glob(os.path.join(runs_dir, "synthetic", "sim*"))):
        similarity = os.path.basename(setting)[3:]
        results["synthetic"][similarity] = _collect(setting, SYNTHETIC_ROWS)
        results["synthetic_gains"][similarity] = _paired_gains(
            results["synthetic"][similarity], SYNTHETIC_ROWS
        )
    fashion_dir = os.path.join(runs_dir, "fashion")
    if os.path.isdir(fashion_dir):
        results["fashion_mnist"] = _collect(fashion_dir, FASHION_ROWS)
        results["fashion_mnist_gains"] = _paired_gains(results["fashion_mnist"], FASHION_ROWS)
    sections = []
    if results["synthetic"]:
        columns = {f"similarity {s}": table for s, table in results["synthetic"].items()}
        sections.append(
            "### Synthetic (section 5.1), test accuracy %\n\n" + _markdown(columns, SYNTHETIC_ROWS)
        )
        per_seed = {f"sim {s}": table for s, table in results["synthetic"].items()}
        sections.append(
            "### Synthetic, every seed (test accuracy %)\n\n"
            + _per_seed_markdown(per_seed, SYNTHETIC_ROWS)
        )
        gains = {f"similarity {s}": table for s, table in results["synthetic_gains"].items()}
        sections.append(
            "### Synthetic, gain over the student alone on the same seed "
            "(points)\n\n" + _markdown(gains, SYNTHETIC_ROWS)
        )
    if results["fashion_mnist"]:
        sections.append(
            "### Fashion-MNIST (section 5.2), test accuracy %\n\n"
            + _markdown(
                {
                    "test accuracy %": results["fashion_mnist"],
                    "gain over student (paired)": results["fashion_mnist_gains"],
                },
                FASHION_ROWS,
            )
        )
    os.makedirs(docs_dir, exist_ok=True)
    with open(os.path.join(docs_dir, "results.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    with open(os.path.join(docs_dir, "tables.md"), "w") as handle:
        handle.write("\n\n".join(sections) + "\n")
    print("\n\n".join(sections))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
