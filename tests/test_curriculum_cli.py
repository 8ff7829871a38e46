"""bin/distill with --curriculum, --pacing and --method=kd_sr on tiny synthetic data."""

import csv

import keras
import numpy as np
import pytest
from cli_helpers import config, run_distill

from tfkd import curriculum, data

TINY = [
    "--dataset=synthetic",
    "--synthetic_size=600",
    "--synthetic_dim=12",
    "--synthetic_classes=4",
    "--synthetic_superclasses=2",
    "--teacher=mlp",
    "--teacher_epochs=3",
    "--student=mlp_small",
    "--epochs=2",
    "--batch_size=64",
    "--optimizer=adam",
    "--learning_rate=0.01",
    "--verbose=0",
    "--export=keras",
]


def _rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_kd_sr_on_the_teacher_curriculum_logs_the_reference_lambda_per_batch(tmp_path, monkeypatch):
    calls = []
    original = curriculum.score
    monkeypatch.setattr(
        curriculum,
        "score",
        lambda teacher, data, *args, **kwargs: (
            calls.append(len(data[1])) or original(teacher, data, *args, **kwargs)
        ),
    )
    out = tmp_path / "run"
    results = run_distill(
        TINY
        + ["--method=kd_sr", "--curriculum=teacher", "--reliance_shift=0.01", f"--output_dir={out}"]
    )
    train_size = len(data.load(config(TINY).data).train[1])
    assert calls.count(train_size) == 1  # the curriculum and kd_sr share one teacher pass
    for name in (
        "curriculum.png",
        "curriculum.npz",
        "batch_values.csv",
        "batch_values_batch_reliance.png",
        "history.csv",
    ):
        assert (out / name).exists(), name
    saved = np.load(out / "curriculum.npz")
    bundle = data.load(config(TINY).data)
    np.testing.assert_array_equal(saved["labels"], bundle.train[1])
    np.testing.assert_array_equal(
        saved["order"], curriculum.order(saved["correct"], saved["confidence"], saved["labels"])
    )
    teacher = keras.saving.load_model(out / "teacher.keras")
    logits = teacher.predict(data.to_float(bundle.train[0]), verbose=0).astype(np.float64)
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    np.testing.assert_allclose(saved["confidence"], probabilities.max(1), rtol=1e-5)
    # No pacing: every epoch is the fixed order, so batch j holds order[64 j: 64 (j + 1)].
    confidence, order = probabilities.max(1), saved["order"]
    steps = -(-len(order) // 64)
    expected = [
        min(
            1.0,
            max(
                0.0, (1 - confidence[order[j * 64 : (j + 1) * 64]].mean()) / confidence.max() - 0.01
            ),
        )
        for j in range(steps)
    ]
    rows = _rows(out / "batch_values.csv")
    assert len(rows) == 2 * steps
    np.testing.assert_allclose(
        [float(r["batch_reliance"]) for r in rows], expected * 2, rtol=1e-4, atol=1e-6
    )
    assert expected[0] < expected[-1]  # easy batches first: lambda rises through the epoch
    history = _rows(out / "history.csv")
    assert len(history) == 2
    sizes = [len(order[j * 64 : (j + 1) * 64]) for j in range(steps)]
    assert float(history[0]["reliance"]) == pytest.approx(
        np.average(expected, weights=sizes), rel=1e-4
    )  # examples-weighted
    assert results["flags"]["curriculum"] == "teacher" and results["method"] == "kd_sr"


def test_paced_inverse_curriculum_with_plain_kd(tmp_path):
    out = tmp_path / "run"
    results = run_distill(
        TINY
        + [
            "--method=kd",
            "--curriculum=inverse",
            "--pacing=linear",
            "--pacing_start=0.3",
            "--pacing_epochs=2",
            "--epochs=3",
            f"--output_dir={out}",
        ]
    )
    saved = np.load(out / "curriculum.npz")
    np.testing.assert_array_equal(
        saved["order"],
        curriculum.order(saved["correct"], saved["confidence"], saved["labels"], reverse=True),
    )
    assert len(_rows(out / "history.csv")) == 3
    assert not (out / "batch_values.csv").exists()  # kd has no per-batch values
    assert 0.0 <= results["student"]["accuracy"] <= 1.0


@pytest.mark.parametrize(
    "args,message",
    [
        (["--pacing=linear"], "--curriculum=teacher"),
        (["--curriculum=teacher", "--pacing=step", "--pacing_start=0"], "--pacing_start"),
        (["--curriculum=teacher", "--pacing=step", "--pacing_epochs=0"], "--pacing_epochs"),
    ],
)
def test_bad_curriculum_flags_name_the_flag(tmp_path, args, message):
    with pytest.raises(ValueError, match=message):
        run_distill(TINY + args + [f"--output_dir={tmp_path / 'run'}"])
    assert not (tmp_path / "run.partial").exists()


def test_paced_random_order_needs_no_teacher_scores(tmp_path, monkeypatch):
    monkeypatch.setattr(curriculum, "score", lambda *args, **kwargs: pytest.fail("scored"))
    run_distill(
        TINY
        + [
            "--curriculum=random",
            "--pacing=exponential",
            "--pacing_start=0.5",
            "--pacing_epochs=1",
            f"--output_dir={tmp_path / 'run'}",
        ]
    )
    assert len(_rows(tmp_path / "run" / "history.csv")) == 2
    assert not (tmp_path / "run" / "curriculum.npz").exists()


def test_a_curriculum_needs_a_teacher(tmp_path):
    with pytest.raises(ValueError, match="--curriculum=teacher needs a teacher"):
        run_distill(
            TINY + ["--curriculum=teacher", "--method=ls", f"--output_dir={tmp_path / 'run'}"]
        )
