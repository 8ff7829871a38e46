"""bin/distill with multi-teacher methods (--teachers) on tiny synthetic data, and bad inputs."""

import csv
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from cli_helpers import config, run_distill

from tfkd import data
from tfkd import teacher_weighting as multi_teacher
from tfkd.cli import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--dataset=synthetic",
    "--synthetic_size=600",
    "--synthetic_dim=12",
    "--synthetic_classes=4",
    "--synthetic_superclasses=2",
    "--teacher_epochs=2",
    "--student=mlp_small",
    "--epochs=2",
    "--batch_size=64",
    "--optimizer=adam",
    "--learning_rate=0.01",
    "--verbose=0",
    "--export=keras",
]


def test_ca_mkd_end_to_end_then_teachers_reused_by_path(tmp_path):
    out = tmp_path / "run"
    results = run_distill(
        TINY + ["--method=ca_mkd", "--teachers=mlp,mlp_small", "--lambda2=5", f"--output_dir={out}"]
    )
    for name in (
        "results.json",
        "history.csv",
        "student.keras",
        "teacher_0.keras",
        "teacher_1.keras",
        "teacher_weights.png",
    ):
        assert (out / name).exists(), name
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    assert [t["arch"] for t in results["teachers"]] == ["mlp", "mlp_small"]
    assert {"teacher_0", "teacher_1", "distill"} <= set(results["seconds"])

    # Teacher and ensemble accuracies, recomputed from the saved teachers.
    bundle = data.load(config(TINY).data)
    x, y = data.to_float(bundle.test[0]), np.asarray(bundle.test[1])
    teachers = [keras.saving.load_model(out / f"teacher_{k}.keras") for k in range(2)]
    logits = np.stack([t.predict(x, verbose=0) for t in teachers])
    for k in range(2):
        assert results["teachers"][k]["accuracy"] == pytest.approx(
            np.mean(np.argmax(logits[k], -1) == y)
        )
    assert results["ensemble"]["accuracy"] == pytest.approx(
        np.mean(multi_teacher.majority_vote(logits) == y)
    )
    train_weights = np.asarray(
        multi_teacher.teacher_weights(
            np.stack([t.predict(data.to_float(bundle.train[0]), verbose=0) for t in teachers]),
            bundle.train[1],
            "ca_mkd",
        )
    )
    np.testing.assert_allclose(results["teacher_weights"]["mean"], train_weights.mean(0), rtol=1e-4)

    with open(out / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    for name in (
        "teacher_0_weight",
        "teacher_1_weight",
        "teacher_0_feature_weight",
        "feature_loss",
        "val_feature_loss",
    ):
        assert name in rows[0]
    assert float(rows[0]["teacher_0_weight"]) + float(rows[0]["teacher_1_weight"]) == pytest.approx(
        1.0, rel=1e-5
    )
    # The exported student is the student alone, without the adapters.
    student = keras.saving.load_model(out / "student.keras")
    assert student.count_params() == results["student"]["params"]
    assert "adapter" not in " ".join(layer.name for layer in student.layers)

    # Reuse both teachers by path: nothing is trained, the accuracies are the same.
    second = tmp_path / "second"
    again = run_distill(
        TINY
        + [
            "--method=ebkd",
            f"--teachers={out / 'teacher_0.keras'},{out / 'teacher_1.keras'}",
            f"--output_dir={second}",
        ]
    )
    assert not {"teacher_0", "teacher_1"} & set(again["seconds"])
    for k in range(2):
        assert again["teachers"][k]["accuracy"] == pytest.approx(results["teachers"][k]["accuracy"])
    assert again["teacher_weights"]["weighting"] == "ebkd"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--method=ca_mkd", "--teachers=mlp"], "--teachers: method 'ca_mkd' needs at least 2"),
        (["--method=aver"], "--teachers: method 'aver' needs a comma list"),
        (["--method=aver", "--teachers=mlp,nothing.keras"], "--teachers: nothing.keras does not"),
        (["--method=aver", "--teachers=mlp_tiny"], "--teachers: 'mlp_tiny' is neither"),
    ],
)
def test_bad_teacher_lists_fail_before_training(tmp_path, args, message):
    """The one line the command line shows names the flag (the library names the field)."""
    try:
        run_distill(TINY + args + [f"--output_dir={tmp_path / 'run'}"])
    except ValueError as error:
        shown = common.one_line("bin/distill", error)
    else:
        pytest.fail("the bad teacher list was accepted")
    assert shown.startswith(f"distill: error: {message}")
    assert not (tmp_path / "run").exists()


def test_fixed_weights_flag_is_checked(tmp_path):
    teacher = tmp_path / "t.keras"
    keras.Sequential([keras.Input((12,)), keras.layers.Dense(4)]).save(teacher)
    with pytest.raises(ValueError, match="--fixed_teacher_weights must be a comma list"):
        run_distill(
            TINY
            + [
                "--method=fixed_mkd",
                f"--teachers={teacher},{teacher}",
                "--fixed_teacher_weights=1,x",
                f"--output_dir={tmp_path / 'run'}",
            ]
        )


def test_command_line_error_is_one_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "bin", "distill"),
            "--method=ca_mkd",
            "--teachers=resnet8",
            f"--output_dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
        timeout=300,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (
        "distill: error: --teachers: method 'ca_mkd' needs at least 2 teachers; got 1 (resnet8)"
    )
