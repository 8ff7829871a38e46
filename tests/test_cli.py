"""bin/distill end to end on tiny synthetic data, every flagfile, and every bad input."""

import dataclasses
import errno
import glob
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from cli_helpers import config, run_distill

from tfkd import data, experiment, models
from tfkd.cli import common, distill
from tfkd.exporting import student as export

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
]


def test_end_to_end_writes_every_output(tmp_path):
    out = tmp_path / "run"
    results = run_distill(TINY + ["--baseline", f"--output_dir={out}"])
    for name in (
        "results.json",
        "history.csv",
        "student.keras",
        "saved_model",
        "student.tflite",
        "teacher.keras",
        "teacher.csv",
        "baseline.csv",
        "logs",
    ):
        assert (out / name).exists(), name
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    assert on_disk["method"] == "kd" and on_disk["dataset"] == "synthetic"
    for role in ("teacher", "student"):
        assert 0.0 <= on_disk[role]["accuracy"] <= 1.0 and on_disk[role]["params"] > 0
    assert on_disk["teacher"]["params"] > on_disk["student"]["params"]
    assert 0.0 <= on_disk["baseline"]["accuracy"] <= 1.0
    exports = on_disk["exports"]
    assert exports["savedmodel"] == "saved_model" and exports["tflite"] == "student.tflite"
    assert exports["tflite_agreement"] >= 0.999
    assert exports["tflite_accuracy"] == pytest.approx(on_disk["student"]["accuracy"], abs=2e-3)
    assert on_disk["flags"]["student"] == "mlp_small" and on_disk["flags"]["epochs"] == 2
    assert on_disk["student"]["val_accuracy"] == pytest.approx(
        np.mean(
            np.argmax(
                keras.saving.load_model(out / "student.keras").predict(
                    data.load(config(TINY).data).validation[0], verbose=0
                ),
                -1,
            )
            == data.load(config(TINY).data).validation[1]
        )
    )
    assert set(on_disk["seconds"]) == {"teacher", "distill", "baseline"}
    header = (out / "history.csv").read_text().splitlines()[0]
    for name in ("loss", "student_loss", "distillation_loss", "accuracy", "val_loss"):
        assert name in header.split(",")
    baseline = (out / "baseline.csv").read_text().splitlines()
    assert len(baseline) == 3 and {"accuracy", "val_accuracy"} <= set(baseline[0].split(","))
    assert float(
        baseline[-1].split(",")[baseline[0].split(",").index("val_accuracy")]
    ) == pytest.approx(on_disk["baseline"]["val_accuracy"], abs=1e-6)
    student = keras.saving.load_model(out / "student.keras")
    bundle = data.load(config(TINY).data)
    accuracy = np.mean(np.argmax(student.predict(bundle.test[0], verbose=0), -1) == bundle.test[1])
    assert accuracy == pytest.approx(on_disk["student"]["accuracy"])
    assert not glob.glob(str(tmp_path / "run.partial*"))


def test_loaded_teacher_is_reused_and_overwrite_replaces(tmp_path):
    first = tmp_path / "first"
    run_distill(TINY + [f"--output_dir={first}", "--export=keras"])
    second = tmp_path / "second"
    second.mkdir()
    (second / "old.txt").write_text("old")
    results = run_distill(
        TINY
        + [
            f"--teacher={first / 'teacher.keras'}",
            f"--output_dir={second}",
            "--overwrite",
            "--export=keras",
        ]
    )
    assert results["teacher"]["arch"].endswith("teacher.keras")
    assert "teacher" not in results["seconds"]
    assert not (second / "old.txt").exists() and (second / "student.keras").exists()
    first_results = json.loads((first / "results.json").read_text())
    assert results["teacher"]["accuracy"] == pytest.approx(first_results["teacher"]["accuracy"])


INPUT_SHAPES = {
    "cifar10": (32, 32, 3),
    "cifar100": (32, 32, 3),
    "synthetic": None,
    "text_synthetic": None,
    "stdlib": None,  # causal LMs: gpt_small and gpt_tiny are not classifiers of models.MODELS
    "idx:/usr/share/datasets/fashion-mnist": (28, 28, 1),
}


@pytest.mark.parametrize(
    "flagfile", sorted(glob.glob(os.path.join(ROOT, "configs", "*.flags"))), ids=os.path.basename
)
def test_every_flagfile_parses_and_builds(flagfile):
    parsed = config([f"--flagfile={flagfile}"])
    if parsed.teacher.spec.endswith(".keras") and not os.path.exists(parsed.teacher.spec):
        # A teacher another flagfile trains (configs/fashion_mnist_teacher.flags): stand in
        # that flagfile's architecture.
        producers = [
            config([f"--flagfile={other}"])
            for other in glob.glob(os.path.join(ROOT, "configs", "*.flags"))
        ]
        producer = next(
            p
            for p in producers
            if p.output.dir and parsed.teacher.spec == os.path.join(p.output.dir, "teacher.keras")
        )
        parsed = dataclasses.replace(
            parsed, teacher=dataclasses.replace(parsed.teacher, spec=producer.teacher.spec)
        )
    experiment.job.check(parsed)
    data_config = parsed.data
    shape = INPUT_SHAPES[data_config.dataset] or (data_config.synthetic_dim,)
    classes = data_config.synthetic_classes if data_config.dataset == "synthetic" else 10
    for arch in (parsed.student, parsed.teacher.spec, *parsed.teacher.specs):
        if arch in models.MODELS:
            model = models.build(arch, input_shape=shape, num_classes=classes)
            assert model.output_shape == (None, classes)
    assert parsed.schedule.epochs >= 1
    assert config(parsed.to_flags()) == parsed  # flags -> config -> flags -> the same config


def run_cli(*args, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TFKD_DEBUG", None)
    return subprocess.run(
        [sys.executable, DISTILL, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )


def assert_one_clear_error(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(error_lines) >= 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    """Files the bad-input cases need: wrong, corrupt and unsafe models, bad data sets."""
    root = tmp_path_factory.mktemp("bad")
    models.build("mlp_small", input_shape=(12,), num_classes=3).save(root / "three_classes.keras")
    models.build("mlp_small", input_shape=(7,), num_classes=4).save(root / "seven_inputs.keras")
    good = root / "good.keras"
    models.build("mlp_small", input_shape=(12,), num_classes=4).save(good)
    (root / "truncated.keras").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (root / "not_a_model.keras").write_text("plain text")
    inputs = keras.Input((12,))
    lambda_model = keras.Model(
        inputs, keras.layers.Dense(4)(keras.layers.Lambda(lambda tensor: tensor * 2)(inputs))
    )
    lambda_model.save(root / "lambda.keras")
    x = np.zeros((20, 4, 4, 1), np.uint8)
    for name, (train_x, train_y) in {
        "npz": (x, [0, 1] * 9 + [0, -1]),
        "empty": (x[:0], []),
    }.items():
        (root / name).mkdir()
        np.savez(root / name / "train.npz", x=train_x, y=np.array(train_y, np.int64))
        np.savez(root / name / "test.npz", x=x[:4], y=np.array([0, 1, 0, 1]))
    occupied = root / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("keep")
    return root


IMAGES = ["--teacher=cnn_small", "--student=cnn_small"]
# The README's bad-input table: case -> (extra flags, fragments of the one line the user sees).
BAD_CASES = {
    "wrong_type": (["--epochs=two"], ["--epochs=two", "invalid literal"]),
    "unknown_flag": (["--temprature=2"], ["temprature", "Did you mean: temperature"]),
    "positional_argument": (["stray"], ["unexpected arguments: stray"]),
    "missing_flagfile": (
        ["--flagfile={root}/missing.flags"],
        ["--flagfile: cannot open", "missing.flags"],
    ),
    "unknown_method": (["--method=nope"], ["--method", "nope", "kd"]),
    "unknown_student": (["--student=nope"], ["--student", "nope", "resnet20"]),
    "unknown_dataset": (["--dataset=nope"], ["--dataset", "synthetic"]),
    "unknown_export_format": (["--export=keras,onnx"], ["--export", "onnx", "tflite"]),
    "enum_value": (["--optimizer=rmsprop"], ["--optimizer=rmsprop", "sgd|adam|adamw"]),
    "alpha_out_of_range": (["--alpha=1.5"], ["--alpha must be in [0, 1], got 1.5"]),
    "temperature_out_of_range": (["--temperature=0"], ["--temperature must be > 0"]),
    "topk_out_of_range": (["--method=kd_topk", "--topk=9"], ["--topk must be in [1, 4]"]),
    "batch_size_out_of_range": (["--batch_size=0"], ["--batch_size must be an integer >= 1"]),
    "validation_fraction_out_of_range": (
        ["--validation_fraction=1.5"],
        ["--validation_fraction must be in [0, 1)"],
    ),
    "teacher_missing": (["--teacher={root}/nothing.keras"], ["--teacher", "does not exist"]),
    "teacher_not_a_model": (
        ["--teacher={root}/not_a_model.keras"],
        ["--teacher", "not a loadable Keras model"],
    ),
    "teacher_corrupt": (
        ["--teacher={root}/truncated.keras"],
        ["--teacher", "not a loadable Keras model"],
    ),
    "teacher_unsafe": (
        ["--teacher={root}/lambda.keras"],
        ["unsafe deserialization", "safe_mode=True"],
    ),
    "class_mismatch": (["--teacher={root}/three_classes.keras"], ["(None, 4)", "(None, 3)"]),
    "input_shape_mismatch": (["--teacher={root}/seven_inputs.keras"], ["(7,)", "(12,)"]),
    "labels_out_of_range": (["--dataset=npz:{root}/npz", *IMAGES], ["label -1", "[0, 2)"]),
    "empty_training_split": (["--dataset=npz:{root}/empty", *IMAGES], ["train split is empty"]),
    "augment_with_teaching": (
        ["--teaching=consistent", "--augment"],
        ["--augment cannot be combined with --teaching"],
    ),
    "curriculum_with_multi_teacher": (
        ["--method=aver", "--teachers=mlp,mlp", "--curriculum=teacher"],
        ["--curriculum=teacher", "multi-teacher"],
    ),
    "calibration_without_validation": (
        ["--calibrate_teacher", "--validation_fraction=0"],
        ["--calibrate_teacher", "--validation_fraction > 0"],
    ),
    "too_few_teachers": (["--method=ca_mkd", "--teachers=mlp"], ["--teachers", "at least 2"]),
    "output_dir_not_empty": (["--output_dir={root}/occupied"], ["--output_dir", "--overwrite"]),
    "output_dir_under_a_file": (
        ["--output_dir={root}/good.keras/run"],
        ["--output_dir", "is a file, not a folder"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_gives_one_clear_line(case, bad_inputs, tmp_path, capsys):
    extra, fragments = BAD_CASES[case]
    extra = [arg.format(root=bad_inputs) for arg in extra]
    out = tmp_path / "out"
    args = TINY + ["--export=keras", f"--output_dir={out}"] + extra
    with pytest.raises(SystemExit, match="^2$") as caught:
        common.run_tool(distill.main, ["bin/distill", *args])
    assert caught.value.code == 2
    stderr = capsys.readouterr().err.strip()
    assert len(stderr.splitlines()) == 1 and stderr.startswith("distill: error: "), stderr
    for fragment in fragments:
        assert fragment in stderr, stderr
    assert not out.exists() and not glob.glob(str(tmp_path / "out.partial*"))
    assert (bad_inputs / "occupied" / "keep.txt").read_text() == "keep"


def test_bad_input_from_the_command_line_is_one_line_without_traceback(bad_inputs, tmp_path):
    result = run_cli(
        *TINY, f"--teacher={bad_inputs}/three_classes.keras", f"--output_dir={tmp_path}/out"
    )
    assert_one_clear_error(result, "(None, 4)", "(None, 3)")
    assert result.stderr.strip().splitlines()[-1].startswith("distill: error: ")


def test_a_full_disk_gives_one_line_and_keeps_earlier_results(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text("earlier")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export, "export_student", full)
    with pytest.raises(SystemExit, match="^2$"):
        common.run_tool(distill.main, ["bin/distill", *TINY, f"--output_dir={out}", "--overwrite"])
    stderr = capsys.readouterr().err.strip()
    assert len(stderr.splitlines()) == 1 and "no space left" in stderr, stderr
    assert "earlier results are intact" in stderr
    assert (out / "results.json").read_text() == "earlier"


FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


@pytest.mark.skipif(
    not os.path.isdir(FASHION_MNIST), reason="Debian's dataset-fashion-mnist is not installed"
)
def test_real_fashion_mnist_end_to_end(tmp_path):
    out = tmp_path / "fmnist"
    results = run_distill(
        [
            f"--dataset=idx:{FASHION_MNIST}",
            "--validation_fraction=0.02",
            "--train_limit=3000",
            "--test_limit=300",
            "--teacher=cnn_small",
            "--teacher_epochs=3",
            "--student=cnn_small",
            "--epochs=2",
            "--batch_size=64",
            "--optimizer=adam",
            "--learning_rate=0.003",
            "--verbose=0",
            f"--output_dir={out}",
        ]
    )
    assert results["teacher"]["accuracy"] > 0.4  # ten classes: chance is 0.1
    assert results["student"]["accuracy"] > 0.3
    assert results["exports"]["tflite_agreement"] >= 0.999


def test_offline_tfds_fails_fast_with_one_line(tmp_path, monkeypatch):
    from tfkd.data import tfds_source

    monkeypatch.setattr(tfds_source, "internet_reachable", lambda *a, **k: False)
    with pytest.raises(data.DataUnavailableError, match="cifar10") as caught:
        run_distill(
            TINY + ["--dataset=cifar10", f"--data_dir={tmp_path}", f"--output_dir={tmp_path}/o"]
        )
    message = str(caught.value)
    assert "\n" not in message and "cifar10" in message and str(tmp_path) in message
    assert "idx:" in message and "synthetic" in message
    assert not (tmp_path / "o").exists()
