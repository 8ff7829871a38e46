"""bin/bench's report: structure, ratios computed from the reported medians, goal verdicts.
Timing is never asserted."""

import json
import statistics

import pytest

from tfkd import benchmark_report, benchmark_variants
from tfkd.cli import bench as bench_cli
from tfkd.cli import common

TINY = [
    "--teacher=cnn_small",
    "--student=cnn_small",
    "--batch_size=8",
    "--steps=2",
    "--repetitions=2",
    "--image_size=8",
    "--num_classes=4",
    "--rss=none",
]


def test_report_structure_and_every_ratio_comes_from_the_reported_numbers(tmp_path):
    output = str(tmp_path / "throughput.json")
    variants = (
        "plain_fit,teacher_forward,online_kd,cached_kd,multi_teacher_k2_cached,"
        "cached_kd_mixed_bfloat16"
    )
    bench_cli.main(["bin/bench", *TINY, f"--variants={variants}", f"--output={output}"])
    with open(output) as handle:
        report = json.load(handle)
    for section in (
        "images_per_second",
        "images_per_cpu_second",
        "peak_rss_mb",
        "ratios",
        "per_repetition_ratios",
        "goals",
        "command",
        "sizes",
        "repetitions",
    ):
        assert section in report
    assert report["command"].startswith("bin/bench ") and "--steps=2" in report["command"]
    chosen = variants.split(",")
    for name in benchmark_variants.VARIANTS:
        if name in chosen:
            runs = report["repetitions"][name]["images_per_cpu_second"]
            assert len(runs) == 2 and all(value > 0 for value in runs)
            assert report["images_per_cpu_second"][name] == statistics.median(runs)
        else:
            assert report["images_per_cpu_second"][name] is None
            assert report["images_per_second"][name] is None
        assert report["peak_rss_mb"][name] is None  # --rss=none
    medians = report["images_per_cpu_second"]
    for label, ratio in report["ratios"].items():
        numerator, denominator = label.split("/")
        if medians[numerator] is None or medians[denominator] is None:
            assert ratio is None and report["per_repetition_ratios"][label] is None
            continue
        assert ratio == pytest.approx(medians[numerator] / medians[denominator], rel=1e-12)
        runs = report["repetitions"]
        per_repetition = [
            a / b
            for a, b in zip(
                runs[numerator]["images_per_cpu_second"], runs[denominator]["images_per_cpu_second"]
            )
        ]
        assert report["per_repetition_ratios"][label] == pytest.approx(
            statistics.median(per_repetition), rel=1e-12
        )
    goals = report["goals"]
    assert set(goals) == {goal for goal, *_ in benchmark_report.GOALS}
    measured = goals["cached_kd_vs_plain_fit"]
    assert measured["met"] == (measured["measured"] >= 0.90)
    assert measured["margin"] == pytest.approx(measured["measured"] - 0.90)
    missing = goals["online_kd_vs_keras_distiller"]
    assert missing["met"] is None and "keras_distiller: not selected" in missing["reason"]


def test_goal_verdicts_from_given_measurements():
    args = bench_cli.parse(["--batch_size=10", "--steps=3", "--repetitions=3", "--rss=none"])
    images = 30
    # (wall, cpu) seconds per repetition: plain_fit 100 / 100 / 50 images per CPU-second.
    measurements = {
        "plain_fit": [(1.0, images / 100), (1.0, images / 100), (1.0, images / 50)],
        "cached_kd": [(1.0, images / 95), (1.0, images / 80), (1.0, images / 45)],
    }
    report = benchmark_report.summarize(
        args, measurements, {"replay_kd": "ValueError: no storage"}, {}, {}, "bin/bench"
    )
    # Per-repetition ratios 0.95, 0.80, 0.90: median 0.90 (the quotient of medians is 80 / 100).
    assert report["per_repetition_ratios"]["cached_kd/plain_fit"] == pytest.approx(0.90)
    assert report["ratios"]["cached_kd/plain_fit"] == pytest.approx(80 / 100)
    assert report["goals"]["cached_kd_vs_plain_fit"]["met"] is True
    replay = report["goals"]["replay_kd_vs_plain_fit"]
    assert replay["met"] is None and "ValueError: no storage" in replay["reason"]


def test_unknown_variant_is_named(capsys):
    with pytest.raises(SystemExit, match="^2$") as caught:
        common.run_tool(bench_cli.main, ["bin/bench", "--variants=plain_fit,warp_drive"])
    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert "bench: error: --variants" in error and "warp_drive" in error


def test_a_model_that_takes_no_images_is_refused():
    with pytest.raises(ValueError, match="--student: 'mlp_small' is not an image model"):
        bench_cli.parse(["--student=mlp_small"])
