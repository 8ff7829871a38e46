"""Scale-out on real processes: two bin/distill workers on 127.0.0.1 equal one (teacher,
baseline and student trained on the cluster); a preempted, then killed cluster ends with the
uninterrupted cluster's weights; TPU errors."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from cluster import DISTILL, ROOT, environment, free_ports, run_cluster, run_one

from tfkd import checkpoint, models

DATA = [
    "--dataset=synthetic",
    "--synthetic_size=900",
    "--synthetic_dim=12",
    "--synthetic_classes=4",
    "--synthetic_superclasses=2",
    "--student=mlp_small",
    "--optimizer=adam",
    "--learning_rate=0.01",
    "--verbose=0",
    "--export=keras",
    "--deterministic",
    "--strategy=multiworker",
]
# 900 examples: 720 train, of which 10% validation -> 648 (11 steps of 64); 180 test.
TRAINED = [
    *DATA,
    "--teacher=mlp_small",
    "--teacher_epochs=2",
    "--baseline",
    "--epochs=2",
    "--batch_size=64",
    "--output_dir=out",
]
TEST_EXAMPLES = 180
# Two workers add their halves of each gradient in an all-reduce, one worker sums the whole
# batch at once: the same numbers added in another order, so float32 results differ in the last
# bits and Adam carries the difference on. Measured after 22 steps: 9.4e-7 of a tensor's
# largest magnitude (teacher 1.8e-7); after one step: below 1e-7.
AFTER_ONE_STEP, AFTER_TWO_EPOCHS = 1e-6, 1e-5
# Each test starts clusters of real processes (bounded by cluster.TIMEOUT each).
pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "teacher.keras"
    keras.utils.set_random_seed(0)
    models.build("mlp", input_shape=(12,), num_classes=4).save(path)
    return path


def weights(path):
    return keras.saving.load_model(path).get_weights()


def relative_difference(first, second):
    """The largest |a - b| over each tensor, divided by the tensor's largest |b|."""
    assert len(first) == len(second)
    return max(
        float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(b))), 1e-6)
        for a, b in zip(first, second)
    )


def test_one_step_on_two_workers_equals_one_and_only_the_chief_writes(teacher, tmp_path):
    args = [*DATA, f"--teacher={teacher}", "--epochs=1", "--batch_size=648", "--output_dir=out"]
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    run_one(args, one)
    outputs = run_cluster(args, 2, two)
    assert "tfkd kd on synthetic" in outputs[0][1]
    assert sorted(os.listdir(two)) == ["out"]  # nothing beside the output folder
    written = sorted(os.listdir(two / "out"))
    assert "results.json" in written and "student.keras" in written
    reference = json.loads((one / "out" / "results.json").read_text())
    results = json.loads((two / "out" / "results.json").read_text())
    assert results["student"]["accuracy"] == reference["student"]["accuracy"]
    assert (
        relative_difference(
            weights(two / "out" / "student.keras"), weights(one / "out" / "student.keras")
        )
        <= AFTER_ONE_STEP
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """TRAINED run by one worker and by an uninterrupted 2-worker cluster."""
    one, two = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("two")
    run_one(TRAINED, one)
    run_cluster(TRAINED, 2, two)
    return one / "out", two / "out"


def history(path):
    lines = path.read_text().splitlines()
    keys = lines[0].split(",")
    return [dict(zip(keys, map(float, line.split(",")))) for line in lines[1:]]


def test_teacher_baseline_and_student_trained_on_two_workers_equal_one(trained):
    one, two = trained
    for name in ("teacher.keras", "student.keras"):
        assert relative_difference(weights(two / name), weights(one / name)) <= AFTER_TWO_EPOCHS
    reference = json.loads((one / "results.json").read_text())
    results = json.loads((two / "results.json").read_text())
    for role in ("teacher", "student", "baseline"):
        # At most one of the 180 test examples may fall the other side of a decision boundary.
        assert abs(results[role]["accuracy"] - reference[role]["accuracy"]) <= 1.01 / TEST_EXAMPLES
    for csv in ("teacher.csv", "baseline.csv", "history.csv"):
        # One worker trains teacher and baseline with compile(); a cluster through a teacher-less
        # Distiller, which also logs its (zero-weighted) terms: the shared columns must agree.
        mine, theirs = history(two / csv), history(one / csv)
        assert [row["epoch"] for row in mine] == [row["epoch"] for row in theirs] == [0, 1]
        for row, expected in zip(mine, theirs):
            for key in ("loss", "val_loss"):
                assert row[key] == pytest.approx(expected[key], rel=AFTER_TWO_EPOCHS), (csv, key)


def test_a_preempted_then_killed_cluster_ends_with_the_uninterrupted_clusters_weights(
    trained, tmp_path
):
    _, reference = trained
    state = tmp_path / "out.partial" / "checkpoints" / "distill" / checkpoint.STATE
    # SIGTERM after step 3 of the first epoch: every worker stops after that step.
    stopped = run_cluster(TRAINED, 2, tmp_path, check=False, TFKD_FAULT="distill:1:3:TERM")
    assert [code for code, _, _ in stopped] == [checkpoint.PREEMPTED] * 2, stopped[0][2][-3000:]
    for _, _, stderr in stopped:
        assert "distill: stopped by SIGTERM after step 3 of epoch 1" in stderr
        assert "to resume, run the same command again" in stderr
    saved = json.loads(state.read_text())
    assert (saved["epoch"], saved["step"]) == (0, 3)
    # SIGKILL in the second epoch: the cluster resumes at step 4, finishes epoch 1 and dies.
    killed = run_cluster(TRAINED, 2, tmp_path, check=False, TFKD_FAULT="distill:2:5")
    assert [code for code, _, _ in killed] == [-9, -9]
    assert "Resuming distill at epoch 1 of 2, step 4" in killed[0][1]
    assert json.loads(state.read_text())["epoch"] == 1
    outputs = run_cluster(TRAINED, 2, tmp_path)
    for _, stdout, _ in outputs:
        assert "Resuming distill at epoch 2 of 2" in stdout
        assert "Training teacher" not in stdout
    out = tmp_path / "out"
    assert json.loads((out / "results.json").read_text())["resumed"] is True
    for name in ("teacher.keras", "student.keras"):
        for mine, theirs in zip(weights(out / name), weights(reference / name)):
            np.testing.assert_array_equal(mine, theirs)
    for csv in ("teacher.csv", "baseline.csv", "history.csv"):
        assert (out / csv).read_text() == (reference / csv).read_text()
    expected = json.loads((reference / "results.json").read_text())
    results = json.loads((out / "results.json").read_text())
    for role in ("teacher", "student", "baseline"):
        assert results[role]["accuracy"] == expected[role]["accuracy"]


@pytest.mark.parametrize(
    "tpu,fragment",
    [
        ("grpc://127.0.0.1:{port}", "no TPU answers at --tpu=grpc://127.0.0.1"),
        (None, "no TPU could be reached"),
    ],
)
def test_tpu_without_a_tpu_fails_within_seconds_with_one_line(tmp_path, tpu, fragment):
    args = [*DATA[:-1], "--teacher=mlp", "--strategy=tpu", f"--output_dir={tmp_path / 'o'}"]
    if tpu:
        args.append("--tpu=" + tpu.format(port=free_ports(1)[0]))
    result = subprocess.run(
        [sys.executable, DISTILL, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment(),
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr


def guide_commands():
    """Every bin/distill argument list in docs/distributed.md: shell lines, TFJob and Vertex AI."""
    import re

    text = open(os.path.join(ROOT, "docs", "distributed.md")).read()
    commands = []
    for block in re.findall(r"```(\w+)\n(.*?)```", text, flags=re.S):
        language, body = block
        if language == "bash":
            body = body.replace("\\\n", " ")
            commands += [
                line.split("bin/distill", 1)[1].split()
                for line in body.splitlines()
                if "bin/distill" in line
            ]
        elif language == "yaml":
            commands += [
                json.loads(args) for args in re.findall(r"args: (\[.*?\])", body, flags=re.S)
            ]
        elif language == "json":
            pools = json.loads(body)["jobSpec"]["workerPoolSpecs"]
            commands += [pool["containerSpec"]["args"] for pool in pools]
    return commands


def test_guide_commands_parse():
    from tfkd.experiment import RunConfig

    commands = guide_commands()
    assert len(commands) == 7
    strategies = set()
    for args in commands:
        args = [arg.replace("configs/", os.path.join(ROOT, "configs") + "/") for arg in args]
        strategies.add(RunConfig.from_flags(args).strategy)
    assert strategies == {"mirrored", "multiworker", "tpu"}
