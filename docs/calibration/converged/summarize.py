"""Reads ladder.json (copied here by run.sh) and writes summary.json and table.md: per teacher
and mode the student's mean and sample std over seeds, its paired difference to the
uncalibrated student and to the student alone, and scale against replace over every cell."""
import json
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = ("none", "scale", "replace")


def mean_std(values):
    return {"mean": statistics.mean(values),
            "std": statistics.stdev(values) if len(values) > 1 else None, "values": values}


def points(values):
    return [round(100 * v, 2) for v in values]


def main():
    with open(os.path.join(HERE, "ladder.json")) as f:
        ladder = json.load(f)
    alone = ladder["baseline"]["accuracies"]
    teachers, scale_minus_replace = [], []
    for row in ladder["rows"]:
        students = {mode: row["student"][mode]["accuracies"] for mode in MODES}
        scale_minus_replace += [s - r for s, r in zip(students["scale"], students["replace"])]
        teachers.append({
            "teacher": row["teacher"], "params": row["params"],
            "teacher_accuracy": row["accuracy"], "temperature": row["temperature"],
            "ece_before": row["ece_before"], "ece_after": row["ece_after"],
            "student": {mode: mean_std(values) for mode, values in students.items()},
            "minus_uncalibrated_points": {
                mode: mean_std(points([a - b for a, b in zip(students[mode], students["none"])]))
                for mode in ("scale", "replace")},
            "minus_alone_points": {
                mode: mean_std(points([a - b for a, b in zip(students[mode], alone)]))
                for mode in MODES},
        })
    summary = {"command": "bash docs/calibration/converged/run.sh",
               "student": ladder["student"], "seeds": ladder["student_seeds"],
               "sizes": ladder["sizes"], "alone": mean_std(alone), "teachers": teachers,
               "scale_minus_replace_points": mean_std(points(scale_minus_replace))}
    with open(os.path.join(HERE, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    def cell(ms):
        spread = "" if ms["std"] is None else f" ± {100 * ms['std']:.2f}"
        return f"{100 * ms['mean']:.2f}{spread}"

    lines = ["| teacher (params) | teacher acc | T* | uncalibrated | scale | replace |",
             "|---|---:|---:|---:|---:|---:|"]
    for t in teachers:
        lines.append(f"| {t['teacher']} ({t['params']:,}) | {100 * t['teacher_accuracy']:.2f} | "
                     f"{t['temperature']:.3f} | " + " | ".join(
                         cell(t["student"][mode]) for mode in MODES) + " |")
    lines.append(f"| student alone | | | {cell(summary['alone'])} | | |")
    with open(os.path.join(HERE, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print("scale - replace (points):", summary["scale_minus_replace_points"])


if __name__ == "__main__":
    main()
