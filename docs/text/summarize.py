"""Collects docs/text/runs/seed*/results.json (copied there by run.sh) into results.json and
table.md: test accuracy of the teacher, the distilled student and the student alone per seed,
their means and sample standard deviations, and the sizes the runs were made with.

    python3 docs/text/summarize.py
"""

import glob
import json
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
ARMS = (
    ("teacher", "teacher (bert_tiny)"),
    ("student", "distilled student (text_cnn, KD)"),
    ("baseline", "student alone (text_cnn)"),
)
TRAIN_SHARE = 0.8  # text_synthetic: the first 80% of the generated texts are the training split


def load_runs():
    runs = {}
    for path in sorted(glob.glob(os.path.join(HERE, "runs", "seed*", "results.json"))):
        with open(path) as handle:
            results = json.load(handle)
        runs[int(results["flags"]["seed"])] = results
    return runs


def sizes(results):
    flags = results["flags"]
    total = int(flags["synthetic_size"])
    train = int(round(TRAIN_SHARE * total))
    validation = int(round(float(flags["validation_fraction"]) * train))
    with open(os.path.join(HERE, "runs", f"seed{flags['seed']}", "export_report.json")) as handle:
        test = json.load(handle)["test_examples"]
    return {
        "generated_texts": total,
        "classes": int(flags["synthetic_classes"]),
        "training_texts": int(flags["train_limit"]) or train - validation,
        "validation_texts": validation,
        "test_texts": test,
        "sequence_length": int(flags["sequence_length"]),
        "vocabulary_size_at_most": int(flags["vocabulary_size"]),
        "teacher_epochs": int(flags["teacher_epochs"]),
        "student_epochs": int(flags["epochs"]),
        "temperature": float(flags["temperature"]),
        "alpha": float(flags["alpha"]),
        "teacher_parameters": results["teacher"]["params"],
        "student_parameters": results["student"]["params"],
    }


def summarize(runs):
    seeds = sorted(runs)
    summary = {"seeds": seeds, "sizes": sizes(runs[seeds[0]]), "accuracy": {}}
    for arm, _ in ARMS:
        values = [runs[seed][arm]["accuracy"] for seed in seeds]
        summary["accuracy"][arm] = {
            "per_seed": values,
            "mean": statistics.mean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        }
    per_seed = summary["accuracy"]
    gains = [
        d - a
        for d, a in zip(
            per_seed["student"]["per_seed"], per_seed["baseline"]["per_seed"], strict=True
        )
    ]
    summary["distillation_gain"] = {
        "per_seed": gains,
        "mean": statistics.mean(gains),
        "seeds_ahead": sum(gain > 0 for gain in gains),
    }
    summary["order_holds_on_mean"] = (
        per_seed["teacher"]["mean"] > per_seed["student"]["mean"] > per_seed["baseline"]["mean"]
    )
    summary["tflite_agreement"] = [runs[seed]["exports"].get("tflite_agreement") for seed in seeds]
    # Wall time of each phase on a shared 2-core machine: what a run costs, not a benchmark.
    summary["seconds"] = {
        phase: [round(runs[seed]["seconds"][phase]) for seed in seeds]
        for phase in ("teacher", "distill", "baseline")
    }
    return summary


def table(summary):
    seeds = summary["seeds"]
    lines = [
        "| model | " + " | ".join(f"seed {seed}" for seed in seeds) + " | mean | std |",
        "|---|" + "---:|" * (len(seeds) + 2),
    ]
    for arm, label in ARMS:
        entry = summary["accuracy"][arm]
        lines.append(
            f"| {label} | "
            + " | ".join(f"{v:.4f}" for v in entry["per_seed"])
            + f" | {entry['mean']:.4f} | {entry['std']:.4f} |"
        )
    gain = summary["distillation_gain"]
    lines.append(
        "| distilled - alone | "
        + " | ".join(f"{v:+.4f}" for v in gain["per_seed"])
        + f" | {gain['mean']:+.4f} | |"
    )
    lines += ["", "| size | value |", "|---|---:|"]
    lines += [f"| {name.replace('_', ' ')} | {value} |" for name, value in summary["sizes"].items()]
    return "\n".join(lines) + "\n"


def main():
    runs = load_runs()
    if not runs:
        raise SystemExit("no runs under docs/text/runs/; run docs/text/run.sh first")
    summary = summarize(runs)
    with open(os.path.join(HERE, "results.json"), "w") as handle:
        json.dump(summary, handle, indent=2)
        handle.write("\n")
    with open(os.path.join(HERE, "table.md"), "w") as handle:
        handle.write(table(summary))
    print(table(summary))


if __name__ == "__main__":
    main()
