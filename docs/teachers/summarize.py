"""Collects docs/teachers/<arch>/ (written by run.sh) into teachers.json and table.md."""

import csv
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ARCHS = ("resnet8", "resnet20", "cnn_large", "resnet56")
TEACHER_COMMAND = "bin/distill --flagfile=configs/fashion_mnist_teacher.flags"


def teacher_entry(arch):
    folder = os.path.join(HERE, arch)
    with open(os.path.join(folder, "calibration.json")) as f:
        calibration = json.load(f)
    with open(os.path.join(folder, "results.json")) as f:
        results = json.load(f)
    with open(os.path.join(folder, "teacher.csv")) as f:
        history = list(csv.DictReader(f))
    command = TEACHER_COMMAND
    if arch != "cnn_large":
        command += f" --teacher={arch} --output_dir=savedmodels/teachers/{arch}"
    return {
        "arch": arch,
        "params": results["teacher"]["params"],
        "epochs": len(history),
        "train_examples": results["teaching"]["distill_examples"],
        "validation_examples": calibration["sizes"]["validation"],
        "test_examples": calibration["sizes"]["test"],
        "test_accuracy": calibration["accuracy"],
        "final_train_accuracy": float(history[-1]["accuracy"]),
        "val_accuracy_by_epoch": [float(row["val_accuracy"]) for row in history],
        # Plateau: the spread of validation accuracy over the last three epochs.
        "val_accuracy_spread_last_3_epochs": round(
            max(float(r["val_accuracy"]) for r in history[-3:])
            - min(float(r["val_accuracy"]) for r in history[-3:]),
            4,
        ),
        "temperature": calibration["temperature"],
        "ece": calibration["ece_before"],
        "ece_calibrated": calibration["ece_after"],
        "nll": calibration["nll_before"],
        "nll_calibrated": calibration["nll_after"],
        "train_seconds": results["seconds"]["teacher"],
        "file": f"docs/teachers/{arch}.keras",
        "file_bytes": os.path.getsize(os.path.join(HERE, f"{arch}.keras")),
        "commands": [
            command,
            f"bin/calibrate --model=docs/teachers/{arch}.keras "
            "--dataset=idx:/usr/share/datasets/fashion-mnist --validation_fraction=0.1 "
            f"--report_dir=docs/teachers/{arch}",
        ],
    }


def main():
    teachers = [
        teacher_entry(arch)
        for arch in ARCHS
        if os.path.isfile(os.path.join(HERE, arch, "calibration.json"))
    ]
    summary = {
        "dataset": "Fashion-MNIST (idx:/usr/share/datasets/fashion-mnist), seed 0",
        "script": "bash docs/teachers/run.sh",
        "teachers": teachers,
    }
    with open(os.path.join(HERE, "teachers.json"), "w") as f:
        json.dump(summary, f, indent=2)
    lines = [
        "| teacher | params | epochs | test acc | T* | ECE | ECE at T* | NLL | NLL at T* "
        "| file (MB) | train s |",
        "|" + "---|" * 11,
    ]
    for t in teachers:
        lines.append(
            f"| {t['arch']} | {t['params']:,} | {t['epochs']} | {t['test_accuracy']:.4f} "
            f"| {t['temperature']:.3f} | {100 * t['ece']:.2f}% | {100 * t['ece_calibrated']:.2f}% "
            f"| {t['nll']:.4f} | {t['nll_calibrated']:.4f} | {t['file_bytes'] / 1e6:.2f} "
            f"| {t['train_seconds']:.0f} |"
        )
    with open(os.path.join(HERE, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
