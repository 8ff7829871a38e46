"""tfkd.experiment: RunConfig from flags, run() from Python, resume after SIGKILL, determinism."""

import dataclasses
import json
import os
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest
from absl import flags
from cluster import run_one

from tfkd import experiment
from tfkd.experiment import RunConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISTILL = os.path.join(ROOT, "bin", "distill")
TINY = [
    "--dataset=synthetic",
    "--synthetic_size=600",
    "--synthetic_dim=12",
    "--synthetic_classes=4",
    "--synthetic_superclasses=2",
    "--teacher=mlp",
    "--teacher_epochs=2",
    "--student=mlp_small",
    "--epochs=2",
    "--batch_size=64",
    "--optimizer=adam",
    "--learning_rate=0.01",
    "--verbose=0",
    "--export=keras",
    "--deterministic",
]


def cli(*args, timeout=300):
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("TFKD_DEBUG", "TF_CPP_MIN_LOG_LEVEL")
    }  # as in a user's terminal
    return subprocess.run(
        [sys.executable, DISTILL, *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def student_weights(folder):
    return keras.saving.load_model(os.path.join(folder, "student.keras")).get_weights()


def assert_same_weights(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_from_flags_leaves_global_flags_alone_and_can_be_called_again():
    before = {name: flags.FLAGS[name].value for name in flags.FLAGS}
    first = RunConfig.from_flags(TINY + ["--temperature=2", "--method=kd"])
    second = RunConfig.from_flags(TINY + ["--method=kd_topk", "--topk=2"])
    assert first.method.options == {"temperature": 2.0}
    assert second.method == experiment.MethodConfig("kd_topk", {"topk": 2})
    assert first.schedule.batch_size == 64 and first.data.synthetic_dim == 12
    assert first.deterministic and first.output.export == ("keras",)
    # absl's global registry was not touched
    assert {name: flags.FLAGS[name].value for name in flags.FLAGS} == before


def test_flags_round_trip_and_replace_derives_variants():
    config = RunConfig.from_flags(
        TINY
        + [
            "--method=ca_mkd",
            "--teachers=mlp,mlp_small",
            "--lambda2=5",
            "--train_limit=100",
            "--noteaching_flip",
        ]
    )
    assert RunConfig.from_flags(config.to_flags()) == config
    assert config.teacher.specs == ("mlp", "mlp_small") and config.data.train_limit == 100
    variant = dataclasses.replace(config, student="mlp")
    assert variant.student == "mlp" and variant.method == config.method
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field .student."):
        config.student = "mlp"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--epochs=two"], "--epochs"),
        (["--nope=1"], "nope"),
        (["stray"], "unexpected arguments"),
        (["--flagfile=/nonexistent/x.flags"], "x.flags"),
    ],
)
def test_from_flags_names_the_bad_flag(args, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.from_flags(args)


def test_unknown_method_option_is_refused_by_name_when_the_config_is_made(tmp_path):
    config = RunConfig.from_flags(TINY + [f"--output_dir={tmp_path / 'o'}"])
    with pytest.raises(ValueError, match="no option temprature") as caught:
        dataclasses.replace(config, method=experiment.MethodConfig("kd", {"temprature": 2}))
    assert caught.value.field == "method.options"
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


@pytest.fixture(scope="module")
def python_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("python") / "run"
    return out, experiment.run(RunConfig.from_flags(TINY + [f"--output_dir={out}"]))


def test_run_from_python_equals_bin_distill(python_run, tmp_path):
    out, results = python_run
    assert results["deterministic"] and results["resumed"] is False
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    assert not (out / "run.json").exists() and not (out / "checkpoints").exists()
    other = tmp_path / "cli"
    finished = cli(*TINY, f"--output_dir={other}")
    assert finished.returncode == 0, finished.stderr
    # Two --deterministic runs, one from Python and one from the command line, agree exactly.
    on_disk = json.loads((other / "results.json").read_text())
    for role in ("teacher", "student"):
        assert on_disk[role] == json.loads(json.dumps(results))[role], role
    assert_same_weights(student_weights(out), student_weights(other))
    assert_same_weights(
        keras.saving.load_model(out / "teacher.keras").get_weights(),
        keras.saving.load_model(other / "teacher.keras").get_weights(),
    )
    assert (out / "history.csv").read_text() == (other / "history.csv").read_text()
    # No TensorFlow C++ start-up lines reach the terminal.
    assert not [
        line
        for line in finished.stderr.splitlines()
        if line.startswith(("I0000", "W0000", "E0000", "WARNING: All log"))
    ], finished.stderr


def test_a_killed_run_resumes_and_equals_an_uninterrupted_one(python_run, tmp_path):
    reference, expected = python_run
    out = tmp_path / "run"
    args = [*TINY, f"--output_dir={out}"]
    # SIGKILL after step 3 of the second distillation epoch (one epoch checkpointed).
    killed = run_one(args, tmp_path, check=False, TFKD_FAULT="distill:2:3")
    assert killed.returncode == -9 and not out.exists()
    teacher_time = (tmp_path / "run.partial" / "teacher.keras").stat().st_mtime_ns

    resumed = cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming distill at epoch 2 of 2" in resumed.stdout
    assert "Loading teacher mlp trained by this run" in resumed.stdout
    assert "Training teacher" not in resumed.stdout
    assert (out / "teacher.keras").stat().st_mtime_ns == teacher_time  # kept, not retrained
    results = json.loads((out / "results.json").read_text())
    assert results["resumed"] is True
    for role in ("teacher", "student"):
        assert results[role]["accuracy"] == expected[role]["accuracy"]
    assert results["student"]["val_accuracy"] == expected["student"]["val_accuracy"]
    assert_same_weights(student_weights(out), student_weights(reference))
    assert (out / "history.csv").read_text() == (reference / "history.csv").read_text()


def test_a_partial_run_with_other_flags_is_refused(tmp_path):
    out = tmp_path / "run"
    partial = tmp_path / "run.partial"
    config = RunConfig.from_flags(TINY + [f"--output_dir={out}"])
    partial.mkdir()
    (partial / "run.json").write_text(json.dumps(experiment.job.resume_key(config)))
    other = RunConfig.from_flags(TINY + [f"--output_dir={out}", "--epochs=3", "--verbose=1"])
    with pytest.raises(ValueError, match="holds an unfinished run with other flags") as caught:
        experiment.run(other)
    message = str(caught.value)
    assert "--epochs was 2, now 3" in message and "--overwrite" in message
    assert "verbose" not in message  # reporting flags may change between attempts
    # A checkpoint made with another --seed is not continued with this one.
    with pytest.raises(ValueError, match="--seed was 0, now 1"):
        experiment.run(RunConfig.from_flags(TINY + [f"--output_dir={out}", "--seed=1"]))
    assert (partial / "run.json").exists()


def test_a_diverging_run_stops_with_one_line_and_keeps_its_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    # SGD at a constant 300 stays finite through epoch 1 and diverges in epoch 2.
    config = RunConfig.from_flags(
        TINY
        + [
            "--method=ls",
            "--learning_rate=300",
            "--optimizer=sgd",
            "--lr_schedule=constant",
            f"--output_dir={out}",
        ]
    )
    expected = (
        "distill: the loss became nan at epoch 2, step 4; training stopped; the last "
        "good checkpoint is kept"
    )
    with pytest.raises(ValueError, match=expected) as caught:
        experiment.run(config)
    assert "\n" not in str(caught.value) and not out.exists()
    folder = tmp_path / "run.partial" / "checkpoints" / "distill"
    state = json.loads((folder / "state.json").read_text())
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert sorted(os.listdir(folder)) == ["epoch-1.weights.h5", "state.json"]
    with h5py.File(folder / "epoch-1.weights.h5") as saved:
        arrays = []
        saved.visititems(
            lambda name, item: (
                arrays.append(np.asarray(item)) if isinstance(item, h5py.Dataset) else None
            )
        )
    assert arrays and all(np.isfinite(array).all() for array in arrays)
    # A re-run resumes from that checkpoint (epoch 2) and meets the same step.
    capsys.readouterr()
    with pytest.raises(ValueError, match=expected):
        experiment.run(config)
    assert "Resuming distill at epoch 2 of 2" in capsys.readouterr().out


def test_help_lists_every_flag_grouped_and_exits_0():
    result = subprocess.run(
        [sys.executable, DISTILL, "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    for group in ("data", "models", "method", "training", "output"):
        assert f"bin/distill {group}:" in result.stdout
    for name in (
        "--dataset",
        "--teacher",
        "--temperature",
        "--curriculum",
        "--epochs",
        "--[no]deterministic",
        "--output_dir",
        "--export",
        "--topk",
    ):
        assert name in result.stdout
    assert "absl.logging" not in result.stdout and not result.stderr.strip(), result.stderr


def test_helpfull_adds_absl_flags_and_exits_0():
    result = subprocess.run(
        [sys.executable, DISTILL, "--helpfull"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "bin/distill data:" in result.stdout and "absl.logging:" in result.stdout
    assert "--flagfile: Insert flag definitions" in result.stdout
