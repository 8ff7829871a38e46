"""Reads the ladders run.sh copied here and writes summary.json and table.md: per student, per
teacher and mode the student's mean and sample std over seeds, its paired difference to the
uncalibrated student and to the student alone, and scale against replace over every cell.

A student's rows may come from several bin/ladder calls with the same settings (the same splits
and seeds); the student alone is the one of the call that ran it (--baseline)."""

import csv
import glob
import json
import os
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = ("none", "scale", "replace")
LADDERS = {
    "cnn_small": ("ladder.json", "resnet56_ladder.json"),
    "resnet8": ("resnet8/ladder.json", "resnet8/others_ladder.json"),
}
# The same student at --temperature=1 (modes none and scale): scale at T = 1 distils from
# softmax(logits / T*), replace's target; the student's logits and the loss weight are those
# of T = 1 instead of T*.
LOW_TEMPERATURE = {"cnn_small": "cnn_small_t1_ladder.json"}
# Settings that must agree between the ladders of one student.
SAME = (
    "dataset",
    "validation_fraction",
    "train_limit",
    "seed",
    "student",
    "method",
    "temperature",
    "alpha",
    "epochs",
    "batch_size",
    "learning_rate",
    "lr_schedule",
    "precision",
    "ladder_seeds",
)


def mean_std(values):
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "values": values,
    }


def points(values):
    return [round(100 * v, 2) for v in values]


def differences(values):
    """Paired differences in points: mean, sample std, and on how many cells the first was
    ahead."""
    summary = mean_std(points(values))
    summary["ahead"] = sum(v > 0 for v in summary["values"])
    return summary


def load_ladders(names):
    ladders = []
    for name in names:
        path = os.path.join(HERE, name)
        if os.path.isfile(path):
            with open(path) as f:
                ladders.append((name, json.load(f)))
    for name, ladder in ladders[1:]:
        first_name, first = ladders[0]
        differ = [k for k in SAME if ladder["flags"][k] != first["flags"][k]]
        if differ or ladder["sizes"] != first["sizes"]:
            raise ValueError(f"{name} and {first_name} differ in {differ or 'sizes'}")
    return ladders


def student_summary(ladders):
    alone = next(ladder["baseline"]["accuracies"] for _, ladder in ladders if "baseline" in ladder)
    rows = [row for _, ladder in ladders for row in ladder["rows"]]
    rows.sort(key=lambda row: row["params"])
    teachers, scale_minus_replace = [], []
    for row in rows:
        students = {mode: row["student"][mode]["accuracies"] for mode in MODES}
        scale_minus_replace += [s - r for s, r in zip(students["scale"], students["replace"])]
        teachers.append(
            {
                "teacher": row["teacher"],
                "params": row["params"],
                "teacher_accuracy": row["accuracy"],
                "temperature": row["temperature"],
                "ece_before": row["ece_before"],
                "ece_after": row["ece_after"],
                "student": {mode: mean_std(values) for mode, values in students.items()},
                "minus_uncalibrated_points": {
                    mode: differences([a - b for a, b in zip(students[mode], students["none"])])
                    for mode in ("scale", "replace")
                },
                "minus_alone_points": {
                    mode: differences([a - b for a, b in zip(students[mode], alone)])
                    for mode in MODES
                },
            }
        )
    _, first = ladders[0]
    return {
        "ladders": [name for name, _ in ladders],
        "commands": [l["command"] for _, l in ladders],
        "student": first["student"],
        "seeds": first["student_seeds"],
        "sizes": first["sizes"],
        "epochs": first["flags"]["epochs"],
        "alone": mean_std(alone),
        "teachers": teachers,
        "scale_minus_replace_points": differences(scale_minus_replace),
    }


def low_temperature(name, summary, ladders):
    """Per teacher of the T = 1 ladder: its students against the main ladder's (paired by
    seed) and against the student alone."""
    path = os.path.join(HERE, name)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        ladder = json.load(f)
    _, first = ladders[0]
    differ = [k for k in SAME if k != "temperature" and ladder["flags"][k] != first["flags"][k]]
    if differ or ladder["sizes"] != first["sizes"]:
        raise ValueError(f"{name} differs from {ladders[0][0]} in {differ or 'sizes'}")
    main = {t["teacher"]: t for t in summary["teachers"]}
    alone = summary["alone"]["values"]
    rows = []
    for row in ladder["rows"]:
        at_4 = main[row["teacher"]]["student"]
        at_1 = {mode: row["student"][mode]["accuracies"] for mode in ("none", "scale")}
        rows.append(
            {
                "teacher": row["teacher"],
                "temperature": row["temperature"],
                "student": {mode: mean_std(values) for mode, values in at_1.items()},
                "scale_t1_minus_replace_points": differences(
                    [a - b for a, b in zip(at_1["scale"], at_4["replace"]["values"])]
                ),
                "none_t1_minus_none_t4_points": differences(
                    [a - b for a, b in zip(at_1["none"], at_4["none"]["values"])]
                ),
                "minus_alone_points": {
                    mode: differences([a - b for a, b in zip(values, alone)])
                    for mode, values in at_1.items()
                },
            }
        )
    return {
        "ladder": name,
        "command": ladder["command"],
        "temperature": ladder["flags"]["temperature"],
        "teachers": rows,
    }


def low_temperature_table(summary):
    low = summary.get("low_temperature")
    if not low:
        return []
    lines = [
        f"Student {summary['student']} at T = {low['temperature']:g} (same data, seeds and "
        "schedule), against the T = 4 ladder above; differences in points, paired by seed:",
        "",
        "| teacher | T* | uncalibrated, T = 1 | scale, T = 1 | scale T = 1 minus replace "
        "| uncalibrated T = 1 minus uncalibrated T = 4 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in low["teachers"]:
        lines.append(
            f"| {t['teacher']} | {t['temperature']:.3f} | {cell(t['student']['none'])} "
            f"| {cell(t['student']['scale'])} | "
            f"{points_cell(t['scale_t1_minus_replace_points'])} | "
            f"{points_cell(t['none_t1_minus_none_t4_points'])} |"
        )
    return lines


def points_cell(d):
    return f"{d['mean']:+.2f} ± {d['std']:.2f} ({d['ahead']}/{len(d['values'])} ahead)"


def histories(ladder_name):
    """{(teacher, mode): {seed: [validation accuracy per epoch]}} of the students' history.csv
    that run.sh copied beside a ladder (<prefix>histories/<teacher>/<mode>/seed_<k>/)."""
    root = os.path.join(HERE, ladder_name.replace("ladder.json", "histories"))
    curves = {}
    for path in sorted(glob.glob(os.path.join(root, "*", "*", "seed_*", "history.csv"))):
        seed_dir = os.path.dirname(path)
        mode_dir = os.path.dirname(seed_dir)
        key = (os.path.basename(os.path.dirname(mode_dir)), os.path.basename(mode_dir))
        with open(path) as f:
            curve = [float(row["val_accuracy"]) for row in csv.DictReader(f)]
        curves.setdefault(key, {})[os.path.basename(seed_dir)] = curve
    return curves


def plateau(curves, last=10):
    """The largest spread (max - min) of validation accuracy over the last `last` epochs, over
    every student of a ladder: how flat the curves are when training stops."""
    spreads = {
        f"{teacher}/{mode}": round(max(max(c[-last:]) - min(c[-last:]) for c in seeds.values()), 4)
        for (teacher, mode), seeds in curves.items()
    }
    epochs = sorted({len(c) for seeds in curves.values() for c in seeds.values()})
    return {
        "epochs": epochs,
        "last_epochs": last,
        "largest_val_spread": max(spreads.values()),
        "val_spread_per_cell": spreads,
    }


def curves_plot(panels, path):
    """One panel per (title, curves of one teacher): mean validation accuracy over seeds."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels):
        for mode, seeds in curves.items():
            length = min(len(c) for c in seeds.values())
            mean = [statistics.mean(c[i] for c in seeds.values()) for i in range(length)]
            ax.plot(range(1, length + 1), [100 * v for v in mean], label=mode)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy % (mean over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cell(ms):
    spread = "" if ms["std"] is None else f" ± {100 * ms['std']:.2f}"
    return f"{100 * ms['mean']:.2f}{spread}"


def table(summary):
    sizes = summary["sizes"]
    lines = [
        f"Student {summary['student']}: {sizes['train']:,} training images, "
        f"{sizes['validation']:,} validation, {sizes['test']:,} test, "
        f"{summary['epochs']} epochs, seeds {', '.join(map(str, summary['seeds']))}.",
        "",
        "| teacher (params) | teacher acc | T* | uncalibrated | scale | replace |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in summary["teachers"]:
        lines.append(
            f"| {t['teacher']} ({t['params']:,}) | {100 * t['teacher_accuracy']:.2f} | "
            f"{t['temperature']:.3f} | "
            + " | ".join(cell(t["student"][mode]) for mode in MODES)
            + " |"
        )
    lines.append(f"| student alone | | | {cell(summary['alone'])} | | |")
    return lines


def main():
    students = {}
    for student, names in LADDERS.items():
        ladders = load_ladders(names)
        if ladders:
            students[student] = student_summary(ladders)
            if student in LOW_TEMPERATURE:
                low = low_temperature(LOW_TEMPERATURE[student], students[student], ladders)
                if low:
                    students[student]["low_temperature"] = low
    names = [n for ns in LADDERS.values() for n in ns] + list(LOW_TEMPERATURE.values())
    curves = {name: histories(name) for name in names}
    plateaus = {name: plateau(c) for name, c in curves.items() if c}
    summary = {
        "command": "bash docs/calibration/converged/run.sh",
        "students": students,
        "plateau": plateaus,
    }
    panels = []
    for name, title in (
        ("resnet8/others_ladder.json", "student resnet8 from teacher resnet8, T = 4"),
        ("cnn_small_t1_ladder.json", "student cnn_small from teacher resnet8, T = 1"),
    ):
        by_mode = {
            mode: seeds
            for (teacher, mode), seeds in curves.get(name, {}).items()
            if teacher == "resnet8"
        }
        if by_mode:
            panels.append((title, by_mode))
    if panels:
        curves_plot(panels, os.path.join(HERE, "curves.png"))
    with open(os.path.join(HERE, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    lines = []
    for student in students.values():
        lines += table(student) + [""]
        lines += low_temperature_table(student) + [""] if "low_temperature" in student else []
    with open(os.path.join(HERE, "table.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    for name, student in students.items():
        print(name, "scale - replace (points):", student["scale_minus_replace_points"])
    for name, p in plateaus.items():
        print(
            name,
            "epochs",
            p["epochs"],
            "largest validation spread over the last",
            p["last_epochs"],
            "epochs:",
            p["largest_val_spread"],
        )


if __name__ == "__main__":
    main()
