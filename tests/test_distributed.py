"""Scale-out on real processes: every phase of a run (teacher training, calibration, curriculum
scoring, cache building, distillation, the baseline, export) on two bin/distill workers on
127.0.0.1 equals the same run on one worker; docs/distributed.md's commands run in miniature; a
preempted, then killed cluster ends with the uninterrupted cluster's weights; TPU errors."""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from cluster import DISTILL, ROOT, environment, free_ports, run_cluster, run_one

from tfkd import checkpoint, experiment

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
    "--deterministic",
    "--strategy=multiworker",
]
# 900 examples: 720 train, of which 10% validation -> 648 (11 steps of 64); 180 test.
# Every phase of a run in one command: a teacher the run trains, calibrated (T* on the
# validation split), a teacher curriculum (scoring every training example) with pacing, the
# teacher's outputs cached on disk, distillation, the baseline and two export formats.
PHASES = [
    *DATA,
    "--teacher=mlp_small",
    "--teacher_epochs=2",
    "--calibrate_teacher",
    "--curriculum=teacher",
    "--pacing=linear",
    "--baseline",
    "--epochs=2",
    "--batch_size=64",
    "--export=keras,savedmodel",
    "--output_dir=out",
]
TEST_EXAMPLES = 180
# Two workers add their halves of each gradient in an all-reduce, one worker sums the whole
# batch at once: the same numbers added in another order, so float32 results differ in the last
# bits and Adam (or momentum) carries the difference on. Measured, as the largest difference of
# a tensor divided by the tensor's largest magnitude: PHASES after 2 x 11 steps, weights 4.0e-7,
# losses 1.1e-6, cached logits 2.2e-7, curriculum confidences 1.1e-7, T* 3.6e-9; the guide's
# recipe after two steps of each phase (ResNets, synchronized BatchNorm, SGD at 0.1 with
# momentum), weights 2.5e-6. The bounds are about four times those.
AFTER_TWO_EPOCHS, AFTER_TWO_STEPS = 5e-6, 1e-5
# Each test starts clusters of real processes (bounded by cluster.TIMEOUT each).
pytestmark = pytest.mark.timeout(1500)


def weights(path):
    return keras.saving.load_model(path).get_weights()


def relative_difference(first, second):
    """The largest |a - b| over each tensor, divided by the tensor's largest |b|."""
    assert len(first) == len(second)
    return max(
        float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(b))), 1e-6)
        for a, b in zip(first, second)
    )


def history(path):
    lines = path.read_text().splitlines()
    keys = lines[0].split(",")
    return [dict(zip(keys, map(float, line.split(",")))) for line in lines[1:]]


def exported_logits(out, x):
    """The student's logits on `x` (float32 inputs) from every exported format in `out`."""
    found = {"keras": keras.saving.load_model(out / "student.keras").predict(x, verbose=0)}
    if (out / "saved_model").exists():
        serve = tf.saved_model.load(str(out / "saved_model")).signatures["serve"]
        found["savedmodel"] = serve(tf.constant(x))["logits"].numpy()
    if (out / "student.tflite").exists():
        interpreter = tf.lite.Interpreter(model_path=str(out / "student.tflite"))
        (given,) = interpreter.get_input_details()
        interpreter.resize_tensor_input(given["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(given["index"], x)
        interpreter.invoke()
        found["tflite"] = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    return found


def assert_same_histories(two, one, names, tolerance):
    for csv in names:
        # One worker trains teacher and baseline with compile(); a cluster through a teacher-less
        # Distiller, which also logs its (zero-weighted) terms: the shared columns must agree.
        mine, theirs = history(two / csv), history(one / csv)
        assert [row["epoch"] for row in mine] == [row["epoch"] for row in theirs]
        for row, expected in zip(mine, theirs):
            for key in ("loss", "val_loss"):
                assert row[key] == pytest.approx(expected[key], rel=tolerance), (csv, key)


# ------------------------------------------------------------------------------ every phase


@pytest.fixture(scope="module")
def every_phase(tmp_path_factory):
    """PHASES run by one worker and by an uninterrupted 2-worker cluster."""
    one, two = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("two")
    args = [*PHASES, "--teacher_cache=disk", "--cache_dir=cache"]
    run_one(args, one)
    outputs = run_cluster(args, 2, two)
    return one, two, outputs


def test_every_phase_on_two_workers_equals_one_worker(every_phase):
    one, two, outputs = every_phase
    for _, stdout, _ in outputs:  # every worker runs every phase
        for line in (
            "Training teacher mlp_small",
            "Calibrating the teacher",
            "Scoring 648 training examples with the teacher",
            "Teacher outputs (disk cache",
            "Training baseline mlp_small",
        ):
            assert line in stdout, (line, stdout)
    # Only the chief writes the run's folder; both write the (shared) cache, each entry renamed
    # into place whole.
    assert sorted(os.listdir(two)) == ["cache", "out"]
    reference = json.loads((one / "out" / "results.json").read_text())
    results = json.loads((two / "out" / "results.json").read_text())
    # Teacher training and distillation: weights and losses.
    for name in ("teacher.keras", "student.keras"):
        difference = relative_difference(weights(two / "out" / name), weights(one / "out" / name))
        assert difference <= AFTER_TWO_EPOCHS, name
    assert_same_histories(
        two / "out", one / "out", ("teacher.csv", "baseline.csv", "history.csv"), AFTER_TWO_EPOCHS
    )
    for role in ("teacher", "student", "baseline"):
        # Weights 4e-7 apart may put one of the 180 test examples on the other side of a
        # decision boundary (measured: none is).
        assert abs(results[role]["accuracy"] - reference[role]["accuracy"]) <= 1.01 / TEST_EXAMPLES
    # Calibration: the fitted temperature and the calibration errors it gives.
    for key in ("temperature", "ece_before", "ece_after", "nll_before", "nll_after"):
        assert results["calibration"][key] == pytest.approx(
            reference["calibration"][key], rel=AFTER_TWO_EPOCHS
        ), key
    # Curriculum scoring: the same order of the training split, confidences within tolerance.
    mine, theirs = np.load(two / "out" / "curriculum.npz"), np.load(one / "out" / "curriculum.npz")
    for key in ("order", "correct", "labels"):
        np.testing.assert_array_equal(mine[key], theirs[key], err_msg=key)
    assert relative_difference([mine["confidence"]], [theirs["confidence"]]) <= AFTER_TWO_EPOCHS
    # Cache building: both cache entries (training and validation splits) hold the same logits.
    for entry in ("path", "validation_path"):
        cached = [
            np.load(folder / results_of["teacher_cache"][entry] / "teacher_0_logits.npy")
            for folder, results_of in ((two, results), (one, reference))
        ]
        assert cached[0].shape == cached[1].shape
        assert relative_difference([cached[0]], [cached[1]]) <= AFTER_TWO_EPOCHS, entry
    # Export: every format the cluster's chief wrote predicts as the one worker's files do.
    x = np.random.default_rng(0).normal(size=(50, 12)).astype(np.float32)
    mine, theirs = exported_logits(two / "out", x), exported_logits(one / "out", x)
    assert sorted(mine) == sorted(theirs) == ["keras", "savedmodel"]
    for name in mine:
        assert relative_difference([mine[name]], [theirs[name]]) <= AFTER_TWO_EPOCHS, name


def test_a_preempted_then_killed_cluster_ends_with_the_uninterrupted_clusters_weights(
    every_phase, tmp_path
):
    """A memory cache this time: cached teacher outputs equal the disk cache's, so the
    uninterrupted disk-cached cluster is the reference, compared exactly."""
    _, uninterrupted, _ = every_phase
    reference = uninterrupted / "out"
    args = [*PHASES, "--teacher_cache=memory"]
    partial = tmp_path / "out.partial" / "checkpoints"
    # SIGTERM after step 3 of the teacher's first epoch: every worker stops after that step.
    stopped = run_cluster(args, 2, tmp_path, check=False, TFKD_FAULT="teacher:1:3:TERM")
    assert [code for code, _, _ in stopped] == [checkpoint.PREEMPTED] * 2, stopped[0][2][-3000:]
    for _, _, stderr in stopped:
        assert "teacher: stopped by SIGTERM after step 3 of epoch 1" in stderr
        assert "to resume, run the same command again" in stderr
    saved = json.loads((partial / "teacher" / checkpoint.STATE).read_text())
    assert (saved["epoch"], saved["step"]) == (0, 3)
    # SIGKILL after step 5 of the second distillation epoch: the teacher resumes at step 4,
    # calibration, scoring and the cache run, one distillation epoch is checkpointed.
    killed = run_cluster(args, 2, tmp_path, check=False, TFKD_FAULT="distill:2:5")
    assert [code for code, _, _ in killed] == [-9, -9], killed[0][2][-3000:]
    assert "Resuming teacher at epoch 1 of 2, step 4" in killed[0][1]
    assert json.loads((partial / "distill" / checkpoint.STATE).read_text())["epoch"] == 1
    outputs = run_cluster(args, 2, tmp_path)
    for _, stdout, _ in outputs:
        assert "Resuming distill at epoch 2 of 2" in stdout
        assert "Training teacher" not in stdout
    assert sorted(os.listdir(tmp_path)) == ["out"]
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    assert results["resumed"] is True and results["teacher_cache"]["reused_on_resume"]
    for name in ("teacher.keras", "student.keras"):
        for mine, theirs in zip(weights(out / name), weights(reference / name), strict=True):
            np.testing.assert_array_equal(mine, theirs, err_msg=name)
    assert (out / "history.csv").read_text() == (reference / "history.csv").read_text()
    for csv in ("teacher.csv", "baseline.csv"):
        mine, theirs = history(out / csv), history(reference / csv)
        assert [sorted(row) for row in mine] == [sorted(row) for row in theirs], csv
        for row, expected in zip(mine, theirs):
            for key, value in expected.items():
                # The teacher-less Distiller that trains teacher and baseline on a cluster logs
                # its zero-weighted term, each worker's own mean of its share, averaged over the
                # workers; the step checkpoint holds the chief's sums, with which every worker
                # resumes: that column may end one float32 rounding (6e-8) away (measured).
                tolerance = 2.4e-7 if key == "distillation_loss" else 0
                assert row[key] == pytest.approx(value, rel=tolerance, abs=0), (csv, key)
    expected = json.loads((reference / "results.json").read_text())
    for role in ("teacher", "student", "baseline"):
        assert results[role]["accuracy"] == expected[role]["accuracy"], role
    assert results["calibration"]["temperature"] == expected["calibration"]["temperature"]


# --------------------------------------------------------------- docs/distributed.md's commands


def guide_commands():
    """Every bin/distill argument list in docs/distributed.md: shell lines, TFJob and Vertex AI."""
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
    return [[arg.replace("configs/", f"{ROOT}/configs/") for arg in args] for args in commands]


def test_guide_commands_parse():
    commands = guide_commands()
    assert len(commands) == 7
    strategies = {experiment.RunConfig.from_flags(args).strategy for args in commands}
    assert strategies == {"mirrored", "multiworker", "tpu"}


def guide_command(strategy):
    """The guide's command for `strategy`; for several machines (two shell lines, the TFJob and
    the Vertex AI job) they are one command with other output folders."""
    commands = {
        tuple(arg for arg in args if not arg.startswith("--output_dir="))
        for args in guide_commands()
        if f"--strategy={strategy}" in args
    }
    assert len(commands) == 1, commands
    return list(commands.pop())


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A stand-in for the guide's CIFAR-10 (the tests read no network): 10 classes of colour
    images, as an npz data set of 80 training and 20 test images of 8 x 8."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split, count in (("train", 80), ("test", 20)):
        labels = rng.integers(0, 10, count)
        x = (labels * 25)[:, None, None, None] + rng.normal(0, 30, (count, 8, 8, 3))
        np.savez(root / f"{split}.npz", x=np.clip(x, 0, 255).astype(np.uint8), y=labels)
    return root


def shrunk(images):
    """The guide's recipe in miniature: its 50,000 CIFAR-10 images as the 80 above, ResNet-56
    -> ResNet-20 as ResNet-8 -> ResNet-8, 200 epochs of each phase as one of two steps (72
    training images after the 10% validation split, 36 a step); seeded for a comparison."""
    return [
        f"--dataset=npz:{images}",
        "--teacher=resnet8",
        "--student=resnet8",
        "--teacher_epochs=1",
        "--epochs=1",
        "--batch_size=36",
        "--verbose=0",
        "--deterministic",
    ]


@pytest.fixture(scope="module")
def guide_on_one_device(images, tmp_path_factory):
    """The guide's recipe in miniature on this process's default strategy: one device."""
    args = [arg for arg in guide_command("mirrored") if arg != "--strategy=mirrored"]
    out = tmp_path_factory.mktemp("guide") / "default"
    experiment.run(experiment.RunConfig.from_flags([*args, *shrunk(images), f"--output_dir={out}"]))
    return out


def assert_same_run(two, one, test_images):
    """Teacher and student weights, losses, accuracies and every exported format's logits."""
    for name in ("teacher.keras", "student.keras"):
        difference = relative_difference(weights(two / name), weights(one / name))
        assert difference <= AFTER_TWO_STEPS, name
    assert_same_histories(two, one, ("teacher.csv", "baseline.csv", "history.csv"), AFTER_TWO_STEPS)
    results = json.loads((two / "results.json").read_text())
    reference = json.loads((one / "results.json").read_text())
    for role in ("teacher", "student", "baseline"):
        assert results[role]["accuracy"] == reference[role]["accuracy"], role
    x = test_images.astype(np.float32) / 255.0
    mine, theirs = exported_logits(two, x), exported_logits(one, x)
    assert sorted(mine) == sorted(theirs) == ["keras", "savedmodel", "tflite"]
    for name in mine:
        assert relative_difference([mine[name]], [theirs[name]]) <= AFTER_TWO_STEPS, name


def test_the_guides_multiworker_command_runs_on_two_workers_as_on_one_device(
    images, guide_on_one_device, tmp_path
):
    args = [*guide_command("multiworker"), "--output_dir=shared/cifar10-kd", *shrunk(images)]
    outputs = run_cluster(args, 2, tmp_path)
    assert "tfkd kd on npz:" in outputs[0][1]
    # Only the chief writes: the working folder holds the output folder and nothing else.
    assert sorted(os.listdir(tmp_path)) == ["shared"]
    assert os.listdir(tmp_path / "shared") == ["cifar10-kd"]
    test_images = np.load(images / "test.npz")["x"]
    assert_same_run(tmp_path / "shared" / "cifar10-kd", guide_on_one_device, test_images)


def test_the_guides_mirrored_command_on_two_devices_equals_one_device(
    images, guide_on_one_device, tmp_path
):
    """Two logical CPUs (tests/conftest.py) stand in for the guide's GPUs."""
    out = tmp_path / "mirrored"
    args = [*guide_command("mirrored"), *shrunk(images), f"--output_dir={out}"]
    results = experiment.run(experiment.RunConfig.from_flags(args))
    assert results["flags"]["strategy"] == "mirrored"
    test_images = np.load(images / "test.npz")["x"]
    assert_same_run(out, guide_on_one_device, test_images)


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
