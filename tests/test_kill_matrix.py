"""Kill a real bin/distill anywhere: SIGKILL (and SIGTERM) at a chosen point of every phase and
during distillation from every teacher-output source; each re-run ends with the weights,
histories and accuracies of an uninterrupted --deterministic run.

TFKD_FAULT (read by `tfkd.checkpoint.fault_point` only) makes the process signal itself at the
point named: `phase[:epoch[:step]][:SIGNAL]`. A chain of faults runs the same command once per
fault, each attempt resuming what the earlier ones left, then once more to the end.
"""

import json
import os

import keras
import numpy as np
import pytest
from cluster import run_one

from tfkd import checkpoint, models

BASE = [
    "--dataset=synthetic",
    "--synthetic_size=600",
    "--synthetic_dim=12",
    "--synthetic_classes=4",
    "--synthetic_superclasses=2",
    "--student=mlp_small",
    "--optimizer=adam",
    "--learning_rate=0.01",
    "--verbose=0",
    "--export=keras",
    "--deterministic",
    "--epochs=2",
    "--batch_size=64",
    "--output_dir=out",
]
# A teacher trained by the run, calibrated, a teacher curriculum with pacing and a baseline:
# every phase of a run. Cached teacher outputs equal the online teacher's, so the
# uninterrupted online run is the reference of the cached ones too.
PHASES = [
    "--teacher=mlp_small",
    "--teacher_epochs=2",
    "--calibrate_teacher",
    "--curriculum=teacher",
    "--pacing=linear",
    "--baseline",
]
pytestmark = pytest.mark.timeout(1800)
KILLED, TERMINATED = -9, -15


def outcome(folder):
    """What must not depend on interruptions: weights, histories and accuracies."""
    out = folder / "out"
    results = json.loads((out / "results.json").read_text())
    found = {
        "accuracies": {
            role: results[role]["accuracy"]
            for role in ("teacher", "student", "baseline")
            if role in results
        }
    }
    for name in ("student.keras", "teacher.keras"):
        if (out / name).exists():
            found[name] = keras.saving.load_model(out / name).get_weights()
    for name in ("history.csv", "teacher.csv", "baseline.csv"):
        if (out / name).exists():
            found[name] = (out / name).read_text()
    return found


def assert_same_outcome(mine, reference):
    assert sorted(mine) == sorted(reference)
    for key, value in reference.items():
        if key.endswith(".keras"):
            assert len(mine[key]) == len(value)
            for a, b in zip(mine[key], value):
                np.testing.assert_array_equal(a, b, err_msg=key)
        else:
            assert mine[key] == value, key


def run_chain(args, faults, folder):
    """One attempt per fault, each stopped at its point; then one to the end. Returns the
    attempts' CompletedProcess objects."""
    attempts = []
    for fault in faults:
        attempt = run_one(args, folder, check=False, TFKD_FAULT=fault)
        # SIGTERM in training checkpoints the step and exits with PREEMPTED; elsewhere it ends
        # the process as SIGKILL does.
        parts = fault.split(":")
        expected = (
            KILLED
            if parts[-1] != "TERM"
            else (checkpoint.PREEMPTED if len(parts) > 2 else TERMINATED)
        )
        assert attempt.returncode == expected, (fault, attempt.stderr[-3000:])
        assert not (folder / "out").exists(), fault
        attempts.append(attempt)
    attempts.append(run_one(args, folder))
    return attempts


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run of every phase, the teacher online."""
    folder = tmp_path_factory.mktemp("reference")
    run_one([*BASE, *PHASES], folder)
    return outcome(folder)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """Saved teachers: an MLP for the synthetic vectors, a small CNN for 8 x 8 images (replay
    stores image views), and the images as an npz data set."""
    root = tmp_path_factory.mktemp("stored")
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    for split, count in (("train", 240), ("test", 60)):
        labels = rng.integers(0, 3, count)
        x = np.clip(
            (labels * 100)[:, None, None, None] + rng.normal(0, 20, (count, 8, 8, 1)), 0, 255
        ).astype(np.uint8)
        np.savez(root / "images" / f"{split}.npz", x=x, y=labels)
    models.build("mlp", input_shape=(12,), num_classes=4, seed=0).save(root / "mlp.keras")
    models.build("cnn_small", input_shape=(8, 8, 1), num_classes=3, seed=0).save(root / "cnn.keras")
    return root


def test_a_kill_in_every_phase_with_a_disk_cache_ends_as_the_uninterrupted_run(reference, tmp_path):
    cache = tmp_path / "cache"
    args = [*BASE, *PHASES, "--teacher_cache=disk", f"--cache_dir={cache}"]
    faults = [
        "teacher:1:3",
        "calibration",
        "cache:TERM",
        "distill:1:2:TERM",
        "distill:2:1",
        "baseline:1:3",
        "export",
    ]
    attempts = dict(zip(faults + ["end"], run_chain(args, faults, tmp_path)))
    assert "Training teacher mlp_small" in attempts["calibration"].stdout
    assert "Loading teacher mlp_small trained by this run" in attempts["cache:TERM"].stdout
    assert "Resuming distill at epoch 1 of 2, step 3" in attempts["distill:2:1"].stdout
    assert "Resuming distill at epoch 2 of 2" in attempts["baseline:1:3"].stdout
    assert "Loading the student distilled by this run" in attempts["export"].stdout
    stopped = attempts["distill:1:2:TERM"].stderr.strip().splitlines()[-1]
    assert stopped.startswith("distill: stopped by SIGTERM after step 2 of epoch 1;")
    assert "to resume, run the same command again:" in stopped
    # The entry stopped by SIGTERM with its arrays written and no manifest stays a hidden
    # temporary folder, never read; the complete entries are those of the training and
    # validation splits.
    assert len([name for name in os.listdir(cache) if not name.startswith(".")]) == 2
    assert_same_outcome(outcome(tmp_path), reference)


def test_a_kill_while_a_memory_cache_is_built_ends_as_the_uninterrupted_run(reference, tmp_path):
    args = [*BASE, *PHASES, "--teacher_cache=memory"]
    run_chain(args, ["cache", "distill:2:1"], tmp_path)
    assert_same_outcome(outcome(tmp_path), reference)


IMAGES = [
    "--student=cnn_small",
    "--epochs=2",
    "--batch_size=32",
    "--verbose=0",
    "--export=keras",
    "--deterministic",
    "--output_dir=out",
]


@pytest.mark.parametrize("source", ["replay", "fixed"])
def test_a_kill_during_distillation_from_a_stored_source_ends_as_the_uninterrupted_run(
    stored, tmp_path, source
):
    if source == "replay":
        flags = [
            *IMAGES,
            f"--dataset=npz:{stored / 'images'}",
            f"--teacher={stored / 'cnn.keras'}",
            "--teaching=consistent",
            "--teacher_cache=replay",
            "--replay_views=2",
            "--replay_topk=2",
        ]
        faults = ["replay", "distill:2:1"]
    else:
        flags = [*BASE, f"--teacher={stored / 'mlp.keras'}", "--teaching=fixed"]
        faults = ["distill:1:3"]

    def args(cache):  # each run its own store, so the interrupted one builds it again
        return [*flags, f"--cache_dir={tmp_path / cache}"]

    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    uninterrupted.mkdir(), interrupted.mkdir()
    run_one(args("reference_cache"), uninterrupted)
    run_chain(args("cache"), faults, interrupted)
    assert_same_outcome(outcome(interrupted), outcome(uninterrupted))
