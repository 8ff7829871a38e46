"""Summarises the runs of docs/replay/run.sh into docs/replay/results.json and table.md.

    python3 docs/replay/summarize.py [RUNS_DIR]        # default savedmodels/replay

Reads every RUNS_DIR/<variant>-seed<S>/results.json (test accuracy, `seconds.distill`, the
replay entry of `teacher_cache`) and RUNS_DIR/<variant>-seed<S>.time (the process's user and
system CPU seconds and wall seconds, from /usr/bin/time). Bytes per view are recomputed from the
stored .npz entry as `tfkd.teacher.replay.ReplayStorage.bytes_per_view` does (every stored array's
nbytes, divided by images x views) and checked against the run's recorded bytes_per_image.
Needs only NumPy.
"""

import json
import os
import re
import statistics
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = (  # name, replay views R, top-k (None: the teacher runs online or once), reference
    ("online_fm", None, None, "online_fm"),
    ("replay_r1_k5", 1, 5, "online_fm"),
    ("replay_r4_k5", 4, 5, "online_fm"),
    ("replay_r10_k5", 10, 5, "online_fm"),
    ("replay_r10_k10", 10, 10, "online_fm"),
    ("fixed", None, None, "online_fm"),
    ("patience60_online_fm", None, None, "patience60_online_fm"),
    ("patience60_replay_r10_k10", 10, 10, "patience60_online_fm"),
)
STORED_ARRAYS = ("boxes", "flips", "partners", "mix_weights", "topk_indices", "topk_probabilities")


def read_time(path):
    """(user + system CPU seconds, wall seconds) from a `/usr/bin/time -f "%U %S %e"` file."""
    with open(path) as stream:
        lines = [
            line.split() for line in stream if re.match(r"^[0-9.]+ [0-9.]+ [0-9.]+$", line.strip())
        ]
    user, system, wall = (float(value) for value in lines[-1])
    return user + system, wall


def storage_bytes(path):
    """Bytes per view and per image of a replay .npz, and its size on disk."""
    with np.load(path, allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in STORED_ARRAYS if name in stored.files}
    images, views = arrays["boxes"].shape[:2]
    per_view = sum(array.nbytes for array in arrays.values()) // max(images * views, 1)
    return {
        "images": int(images),
        "views": int(views),
        "bytes_per_view": int(per_view),
        "bytes_per_image": int(per_view * views),
        "file_bytes": os.path.getsize(path),
        "arrays": {name: [str(array.dtype), list(array.shape)] for name, array in arrays.items()},
    }


def collect(runs):
    rows = {}
    for name, views, topk, reference in VARIANTS:
        seeds = {}
        for entry in sorted(os.listdir(runs)):
            match = re.fullmatch(rf"{name}-seed(\d+)", entry)
            if not match or not os.path.isfile(os.path.join(runs, entry, "results.json")):
                continue
            with open(os.path.join(runs, entry, "results.json")) as stream:
                result = json.load(stream)
            cpu, wall = read_time(os.path.join(runs, entry + ".time"))
            record = {
                "test_accuracy": result["student"]["accuracy"],
                "teacher_test_accuracy": result["teacher"]["accuracy"],
                "distill_seconds": result["seconds"]["distill"],
                "process_cpu_seconds": cpu,
                "process_wall_seconds": wall,
            }
            cache = result["teacher_cache"]
            if cache.get("mode") == "replay":
                stored = storage_bytes(cache["path"])
                if stored["bytes_per_image"] != cache["bytes_per_image"]:
                    raise ValueError(
                        f"{entry}: bytes per image {stored['bytes_per_image']} "
                        f"recomputed, {cache['bytes_per_image']} recorded"
                    )
                record.update(
                    {
                        "replay_build_seconds": cache["seconds"],
                        "replay_built": cache["built"],
                        "storage": stored,
                    }
                )
            seeds[match.group(1)] = record
        if seeds:
            rows[name] = {
                "replay_views": views,
                "replay_topk": topk,
                "reference": reference,
                "seeds": seeds,
            }
    return rows


def summarise(rows):
    for row in rows.values():
        seeds = row["seeds"]
        online = rows.get(row["reference"], {}).get("seeds", {})
        accuracies = [record["test_accuracy"] for record in seeds.values()]
        row["test_accuracy_mean"] = statistics.mean(accuracies)
        row["test_accuracy_sd"] = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        row["distill_seconds_median"] = statistics.median(
            record["distill_seconds"] for record in seeds.values()
        )
        row["process_cpu_seconds_median"] = statistics.median(
            record["process_cpu_seconds"] for record in seeds.values()
        )
        paired = [seed for seed in seeds if seed in online]
        if paired:
            row["accuracy_minus_reference_mean"] = statistics.mean(
                seeds[seed]["test_accuracy"] - online[seed]["test_accuracy"] for seed in paired
            )
            row["cpu_vs_reference_median"] = statistics.median(
                seeds[seed]["process_cpu_seconds"] / online[seed]["process_cpu_seconds"]
                for seed in paired
            )
            row["paired_seeds"] = len(paired)
        stored = [record["storage"] for record in seeds.values() if "storage" in record]
        if stored:
            row["bytes_per_view"] = stored[0]["bytes_per_view"]
            row["bytes_per_image"] = stored[0]["bytes_per_image"]
            row["file_bytes"] = stored[0]["file_bytes"]
            row["stored_images"] = stored[0]["images"]
            row["replay_build_seconds_median"] = statistics.median(
                record["replay_build_seconds"] for record in seeds.values()
            )
    return rows


def table(rows):
    lines = [
        "| variant | R | k | seeds | test accuracy (mean ± sd) | per seed | vs reference "
        "(mean of paired differences) | reference | distill s (median) | process CPU s "
        "(median) | CPU vs reference (median ratio) | replay build s (median) | bytes/view | "
        "bytes/image | .npz bytes |",
        "|---|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    dash = "-"
    for name, row in rows.items():
        per_seed = ", ".join(
            f"{row['seeds'][seed]['test_accuracy']:.4f}" for seed in sorted(row["seeds"], key=int)
        )
        lines.append(
            f"| {name} | {row['replay_views'] or dash} | {row['replay_topk'] or dash} | "
            f"{len(row['seeds'])} | {row['test_accuracy_mean']:.4f} ± "
            f"{row['test_accuracy_sd']:.4f} | {per_seed} | "
            + (f"{row['accuracy_minus_reference_mean']:+.4f}" if "paired_seeds" in row else dash)
            + f" | {row['reference']} | {row['distill_seconds_median']:.1f} | "
            f"{row['process_cpu_seconds_median']:.1f} | "
            + (f"{row['cpu_vs_reference_median']:.3f}" if "paired_seeds" in row else dash)
            + " | "
            + (f"{row['replay_build_seconds_median']:.1f}" if "bytes_per_view" in row else dash)
            + " | "
            + " | ".join(
                str(row[key]) if key in row else dash
                for key in ("bytes_per_view", "bytes_per_image", "file_bytes")
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


SETTINGS = (
    "train_limit",
    "test_limit",
    "batch_size",
    "epochs",
    "optimizer",
    "learning_rate",
    "lr_schedule",
    "temperature",
    "crop_min_scale",
    "teacher",
)


def settings(runs):
    """The schedule flags of the first online_fm run, and the teacher's own recorded result."""
    with open(os.path.join(runs, "online_fm-seed0", "results.json")) as stream:
        flags = json.load(stream)["flags"]
    found = {name: flags.get(name) for name in SETTINGS}
    teacher_results = os.path.join(os.path.dirname(flags["teacher"]), "results.json")
    if os.path.isfile(teacher_results):
        with open(teacher_results) as stream:
            teacher = json.load(stream)["teacher"]
        found["teacher_run"] = {
            "arch": teacher["arch"],
            "test_accuracy": teacher["accuracy"],
            "params": teacher["params"],
        }
    return found


def main(argv):
    runs = argv[1] if len(argv) > 1 else "savedmodels/replay"
    rows = summarise(collect(runs))
    with open(os.path.join(HERE, "results.json"), "w") as stream:
        json.dump(
            {"runs_dir": runs, "settings": settings(runs), "variants": rows}, stream, indent=2
        )
        stream.write("\n")
    with open(os.path.join(HERE, "table.md"), "w") as stream:
        stream.write(table(rows))
    print(table(rows))


if __name__ == "__main__":
    main(sys.argv)
