"""`bin/bench`'s report: medians over repetitions of images per second and per CPU-second,
ratios between variants, and the throughput goals judged on them (`tfkd.benchmarks`)."""

import os
import resource
import statistics

from tfkd.benchmark_variants import VARIANTS

# (name, numerator, denominator, at least)
GOALS = (
    ("cached_kd_vs_plain_fit", "cached_kd", "plain_fit", 0.90),
    ("multi_teacher_k4_cached_vs_plain_fit", "multi_teacher_k4_cached", "plain_fit", 0.85),
    ("replay_kd_vs_plain_fit", "replay_kd", "plain_fit", 0.80),
    ("online_kd_vs_keras_distiller", "online_kd", "keras_distiller", 0.97),
    ("online_kd_fast_teacher_vs_online_kd", "online_kd_fast_teacher", "online_kd", 1.15),
    ("online_kd_fast_teacher_vs_keras_distiller", "online_kd_fast_teacher", "keras_distiller", 1.2),
)


def _median(values):
    return statistics.median(values) if values else None


def summarize(args, measurements, unavailable, rss, setup_seconds, command):
    """The JSON report from per-repetition (wall, CPU) seconds per variant."""
    images = args.batch_size * args.steps
    per_second, per_cpu, repetitions = {}, {}, {}
    for name in VARIANTS:
        runs = measurements.get(name)
        if not runs:
            per_second[name] = per_cpu[name] = None
            continue
        wall = [images / w for w, _ in runs]
        cpu = [images / c for _, c in runs]
        repetitions[name] = {"images_per_second": wall, "images_per_cpu_second": cpu}
        per_second[name], per_cpu[name] = _median(wall), _median(cpu)
    pairs = [(f"{name}/plain_fit", name, "plain_fit") for name in VARIANTS if name != "plain_fit"]
    pairs += [(f"{a}/{b}", a, b) for _, a, b, _ in GOALS if b != "plain_fit"]
    pairs += [
        (f"{name}/{base}", name, base)
        for name in VARIANTS
        for base in [name.removesuffix("_mixed_bfloat16")]
        if base not in (name, "plain_fit")
    ]
    ratios, per_repetition = {}, {}
    for label, a, b in pairs:
        if per_cpu.get(a) is None or per_cpu.get(b) is None:
            ratios[label] = per_repetition[label] = None
            continue
        ratios[label] = per_cpu[a] / per_cpu[b]
        per_repetition[label] = _median(
            [
                x / z
                for x, z in zip(
                    repetitions[a]["images_per_cpu_second"], repetitions[b]["images_per_cpu_second"]
                )
            ]
        )
    goals = {}
    for goal, a, b, target in GOALS:
        measured = per_repetition.get(f"{a}/{b}")
        entry = {
            "numerator": a,
            "denominator": b,
            "at_least": target,
            "measured": measured,
            "measure": "median over repetitions of the per-repetition ratio of images per "
            "CPU-second",
        }
        if measured is None:
            missing = [v for v in (a, b) if per_cpu.get(v) is None]
            entry.update(
                met=None,
                reason="; ".join(
                    f"{v}: {unavailable.get(v, 'not selected (--variants)')}" for v in missing
                ),
            )
        else:
            entry.update(
                met=measured >= target,
                margin=measured - target,
                relative_margin=measured / target - 1.0,
            )
        goals[goal] = entry
    return {
        "images_per_second": per_second,
        "images_per_cpu_second": per_cpu,
        "peak_rss_mb": {name: rss.get(name) for name in VARIANTS},
        "peak_rss_measure": (
            "VmHWM of one child process per variant that builds and runs only that variant"
            if args.rss == "subprocess"
            else "not measured (--rss=none)"
        ),
        "ratios": ratios,
        "per_repetition_ratios": per_repetition,
        "goals": goals,
        "repetitions": repetitions,
        "unavailable": unavailable,
        "setup_seconds": setup_seconds,
        "process_peak_rss_mb": own_peak_rss_mb(),
        "sizes": {
            "teacher": args.teacher,
            "student": args.student,
            "batch_size": args.batch_size,
            "timed_steps": args.steps,
            "repetitions": args.repetitions,
            "image_size": args.image_size,
            "num_classes": args.num_classes,
            "examples": args.training_images,
            "fast_precision": args.fast_precision,
            "replay_views": args.replay_views,
            "replay_topk": args.replay_topk,
            "cpu_count": os.cpu_count(),
        },
        "command": command,
    }


def table(report):
    """Markdown table of the report's medians and ratios to plain_fit."""
    lines = [
        "| variant | images/s | images/CPU-s | vs plain_fit (CPU-s) | peak RSS MB |",
        "|---|---:|---:|---:|---:|",
    ]
    fmt = lambda v, spec: "n/a" if v is None else format(v, spec)  # noqa: E731
    for name in VARIANTS:
        ratio = (
            1.0 if name == "plain_fit" else report["per_repetition_ratios"].get(f"{name}/plain_fit")
        )
        if report["images_per_cpu_second"][name] is None:
            ratio = None
        lines.append(
            f"| {name} | {fmt(report['images_per_second'][name], '.1f')} | "
            f"{fmt(report['images_per_cpu_second'][name], '.1f')} | "
            f"{fmt(ratio, '.3f')} | {fmt(report['peak_rss_mb'][name], '.0f')} |"
        )
    lines += ["", "| goal | at least | measured | met |", "|---|---:|---:|---|"]
    for goal, entry in report["goals"].items():
        met = "n/a" if entry["met"] is None else ("yes" if entry["met"] else "no")
        lines.append(f"| {goal} | {entry['at_least']} | {fmt(entry['measured'], '.3f')} | {met} |")
    return "\n".join(lines)


def own_peak_rss_mb():
    """This process image's peak resident set (VmHWM), in MB.

    Not `getrusage(...).ru_maxrss`: Linux carries that over from the parent through fork and
    exec, so a child started by a large parent would report the parent's peak.
    """
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
