"""Reads the ladders run.sh copied here and writes summary.json and table.md: per student, per
teacher and mode the student's mean and sample std over seeds, its paired difference to the
uncalibrated student and to the student alone, and scale against replace over every cell.

A student's rows may come from several bin/ladder calls with the same settings (the same splits
and seeds); the student alone is the one of the call that ran it (--baseline)."""
import json
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = ("none", "scale", "replace")
LADDERS = {"cnn_small": ("ladder.json", "resnet56_ladder.json"),
           "resnet8": ("resnet8/ladder.json",)}
# Settings that must agree between the ladders of one student.
SAME = ("dataset", "validation_fraction", "train_limit", "seed", "student", "method",
        "temperature", "alpha", "epochs", "batch_size", "learning_rate", "lr_schedule",
        "precision", "ladder_seeds")


def mean_std(values):
    return {"mean": statistics.mean(values),
            "std": statistics.stdev(values) if len(values) > 1 else None, "values": values}


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
    alone = next(ladder["baseline"]["accuracies"] for _, ladder in ladders
                 if "baseline" in ladder)
    rows = [row for _, ladder in ladders for row in ladder["rows"]]
    rows.sort(key=lambda row: row["params"])
    teachers, scale_minus_replace = [], []
    for row in rows:
        students = {mode: row["student"][mode]["accuracies"] for mode in MODES}
        scale_minus_replace += [s - r for s, r in zip(students["scale"], students["replace"])]
        teachers.append({
            "teacher": row["teacher"], "params": row["params"],
            "teacher_accuracy": row["accuracy"], "temperature": row["temperature"],
            "ece_before": row["ece_before"], "ece_after": row["ece_after"],
            "student": {mode: mean_std(values) for mode, values in students.items()},
            "minus_uncalibrated_points": {
                mode: differences([a - b for a, b in zip(students[mode], students["none"])])
                for mode in ("scale", "replace")},
            "minus_alone_points": {
                mode: differences([a - b for a, b in zip(students[mode], alone)])
                for mode in MODES},
        })
    _, first = ladders[0]
    return {"ladders": [name for name, _ in ladders], "commands": [l["command"] for _, l in ladders],
            "student": first["student"], "seeds": first["student_seeds"],
            "sizes": first["sizes"], "epochs": first["flags"]["epochs"],
            "alone": mean_std(alone), "teachers": teachers,
            "scale_minus_replace_points": differences(scale_minus_replace)}


def cell(ms):
    spread = "" if ms["std"] is None else f" ± {100 * ms['std']:.2f}"
    return f"{100 * ms['mean']:.2f}{spread}"


def table(summary):
    sizes = summary["sizes"]
    lines = [f"Student {summary['student']}: {sizes['train']:,} training images, "
             f"{sizes['validation']:,} validation, {sizes['test']:,} test, "
             f"{summary['epochs']} epochs, seeds {', '.join(map(str, summary['seeds']))}.", "",
             "| teacher (params) | teacher acc | T* | uncalibrated | scale | replace |",
             "|---|---:|---:|---:|---:|---:|"]
    for t in summary["teachers"]:
        lines.append(f"| {t['teacher']} ({t['params']:,}) | {100 * t['teacher_accuracy']:.2f} | "
                     f"{t['temperature']:.3f} | " + " | ".join(
                         cell(t["student"][mode]) for mode in MODES) + " |")
    lines.append(f"| student alone | | | {cell(summary['alone'])} | | |")
    return lines


def main():
    students = {}
    for student, names in LADDERS.items():
        ladders = load_ladders(names)
        if ladders:
            students[student] = student_summary(ladders)
    summary = {"command": "bash docs/calibration/converged/run.sh", "students": students}
    with open(os.path.join(HERE, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    lines = []
    for student in students.values():
        lines += table(student) + [""]
    with open(os.path.join(HERE, "table.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    for name, student in students.items():
        print(name, "scale - replace (points):", student["scale_minus_replace_points"])


if __name__ == "__main__":
    main()
