"""Collects docs/hinton/runs/ (copied there by run.sh) into results.json, table.md and curve.png."""

import csv
import json
import os
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PAIRS = (("cnn_large", "resnet8"), ("resnet20", "resnet8"), ("cnn_large", "cnn_small"))
SEEDS = (0, 1, 2)
# The student alone is trained once per student and seed, in the run of this pair.
BASELINE_OF = {"resnet8": "cnn_large-resnet8", "cnn_small": "cnn_large-cnn_small"}
CLAIM = (
    "Hinton et al. (2015), MNIST: a small net trained alone makes 146 test errors; "
    "distilled from a large net (67 errors) at T = 20 it makes 74: the distilled student "
    "beats the same student trained alone."
)


def load(name):
    folder = os.path.join(HERE, "runs", name)
    with open(os.path.join(folder, "results.json")) as f:
        return json.load(f), folder


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def mean_std(values):
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "values": values,
    }


def plateau():
    """Spread of validation accuracy over the last 10 epochs, every run: has it plateaued?"""
    spreads = {}
    for name in sorted(os.listdir(os.path.join(HERE, "runs"))):
        for label, csv_name in (("distilled", "history.csv"), ("alone", "baseline.csv")):
            path = os.path.join(HERE, "runs", name, csv_name)
            if os.path.isfile(path):
                last = [float(r["val_accuracy"]) for r in rows(path)[-10:]]
                spreads[f"{name} {label}"] = round(max(last) - min(last), 4)
    return {
        "val_accuracy_spread_last_10_epochs": spreads,
        "largest": max(spreads.values()) if spreads else None,
    }


def main():
    pairs = []
    for teacher, student in PAIRS:
        pair = f"{teacher}-{student}"
        runs = [
            load(f"{pair}-seed{s}")[0]
            for s in SEEDS
            if os.path.isfile(os.path.join(HERE, "runs", f"{pair}-seed{s}", "results.json"))
        ]
        alone = [
            load(f"{BASELINE_OF[student]}-seed{s}")[0]["baseline"]["accuracy"]
            for s in SEEDS[: len(runs)]
        ]
        if not runs:
            continue
        distilled = [r["student"]["accuracy"] for r in runs]
        flags = runs[0]["flags"]
        pairs.append(
            {
                "teacher": teacher,
                "student": student,
                "teacher_params": runs[0]["teacher"]["params"],
                "student_params": runs[0]["student"]["params"],
                "teacher_test_accuracy": runs[0]["teacher"]["accuracy"],
                "seeds": list(SEEDS[: len(runs)]),
                "distilled": mean_std(distilled),
                "alone": mean_std(alone),
                "gain": mean_std([d - a for d, a in zip(distilled, alone)]),
                "distilled_beats_alone_every_seed": all(d > a for d, a in zip(distilled, alone)),
                "teacher_minus_alone": runs[0]["teacher"]["accuracy"] - statistics.mean(alone),
                "distill_seconds": mean_std([r["seconds"]["distill"] for r in runs]),
                # Final training and validation accuracy (seed means): a student that fits its
                # training set no better than held-out data is limited by its capacity.
                "final_accuracy": {
                    label: {
                        split: round(
                            statistics.mean(
                                float(
                                    rows(os.path.join(HERE, "runs", f"{run}-seed{s}", csv_name))[
                                        -1
                                    ][key]
                                )
                                for s in SEEDS[: len(runs)]
                            ),
                            4,
                        )
                        for split, key in (("train", "accuracy"), ("validation", "val_accuracy"))
                    }
                    for label, run, csv_name in (
                        ("distilled", pair, "history.csv"),
                        ("alone", BASELINE_OF[student], "baseline.csv"),
                    )
                },
            }
        )
    sizes = {
        "train_examples": flags["train_limit"],
        "epochs": flags["epochs"],
        "temperature": flags["temperature"],
        "alpha": flags["alpha"],
        "batch_size": flags["batch_size"],
        "optimizer": flags["optimizer"],
        "learning_rate": flags["learning_rate"],
        "lr_schedule": flags["lr_schedule"],
        "teacher_cache": flags["teacher_cache"],
        "test_examples": 10000,
    }
    summary = {
        "claim": CLAIM,
        "script": "bash docs/hinton/run.sh",
        "sizes": sizes,
        "pairs": pairs,
        "plateau": plateau(),
    }
    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump(summary, f, indent=2)

    def pct(ms):
        if ms["std"] is None:
            return f"{100 * ms['mean']:.2f}"
        return f"{100 * ms['mean']:.2f} ± {100 * ms['std']:.2f}"

    lines = [
        "| teacher (test acc) | student | distilled | alone | gain (points) | better every seed |",
        "|---|---|---:|---:|---:|---|",
    ]
    for p in pairs:
        lines.append(
            f"| {p['teacher']} ({100 * p['teacher_test_accuracy']:.2f}) | "
            f"{p['student']} | {pct(p['distilled'])} | {pct(p['alone'])} | "
            f"{pct(p['gain'])} | {'yes' if p['distilled_beats_alone_every_seed'] else 'no'} |"
        )
    with open(os.path.join(HERE, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    # One curve: validation accuracy per epoch, seed 0, cnn_large -> resnet8, and the student
    # alone.
    folder = os.path.join(HERE, "runs", "cnn_large-resnet8-seed0")
    if os.path.isfile(os.path.join(folder, "baseline.csv")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, name in (("distilled from cnn_large", "history.csv"), ("alone", "baseline.csv")):
            history = rows(os.path.join(folder, name))
            ax.plot(
                [int(r["epoch"]) + 1 for r in history],
                [float(r["val_accuracy"]) for r in history],
                label=label,
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy")
        ax.set_title("resnet8 on 5,000 Fashion-MNIST images, seed 0")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(HERE, "curve.png"), dpi=120)


if __name__ == "__main__":
    main()
