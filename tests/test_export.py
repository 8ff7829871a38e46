"""Export formats, the uint8 signature, int8 calibration data, the parity report and bin/export."""

import glob
import json
import os
import subprocess
import sys
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfkd import data, experiment, models
from tfkd.cli import common
from tfkd.cli import export as export_cli
from tfkd.experiment import tools
from tfkd.exporting import parity as export_report
from tfkd.exporting import student as export
from tfkd.exporting.parity import Measurement

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORT = os.path.join(ROOT, "bin", "export")
SHAPE, CLASSES = (8, 8, 1), 3
FAST_REPORT = Measurement(latency_calls=200, batch_size=64, throughput_seconds=0.05)
QUIET = export.ExportSettings(verbose=False)


def bright_band_images(count, seed):
    """uint8 [count, 8, 8, 1] noise with a bright band in rows 0-2, 3-5 or 6-7 = the label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, count)
    images = rng.integers(0, 90, (count, *SHAPE)).astype(np.uint8)
    for index, label in enumerate(labels):
        rows = slice(3 * label, min(3 * label + 3, SHAPE[0]))
        images[index, rows] = rng.integers(170, 256, images[index, rows].shape)
    return images, labels


@pytest.fixture(scope="module")
def trained():
    """A cnn_small trained to near-perfect accuracy on the bright-band task, and its data."""
    keras.utils.set_random_seed(0)
    train, test = bright_band_images(600, seed=1), bright_band_images(150, seed=2)
    x = data.to_float(train[0])
    model = models.build(
        "cnn_small",
        SHAPE,
        CLASSES,
        mean=x.mean(axis=(0, 1, 2)),
        variance=x.var(axis=(0, 1, 2)),
        seed=0,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, train[1], batch_size=64, epochs=4, verbose=0)
    return model, train, test


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    model, train, test = trained
    out = tmp_path_factory.mktemp("export")
    exports = export.export_student(
        model,
        out,
        export.FORMATS,
        test_data=test,
        train_images=train[0],
        settings=export.ExportSettings(verbose=False, measurement=FAST_REPORT),
    )
    report = json.loads((out / "export_report.json").read_text())
    return out, exports, report


def run_interpreter(path, x):
    """Independent LiteRT run of float x: quantise input, one invoke per example, dequantise."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    outputs = []
    for example in x:
        value = example[None]
        scale, zero_point = source["quantization"]
        if source["dtype"] == np.int8:
            value = np.clip(np.round(value / scale) + zero_point, -128, 127).astype(np.int8)
        interpreter.set_tensor(source["index"], value.astype(source["dtype"]))
        interpreter.invoke()
        output = interpreter.get_tensor(target["index"])[0].astype(np.float64)
        scale, zero_point = target["quantization"]
        outputs.append((output - zero_point) * scale if target["dtype"] == np.int8 else output)
    return np.array(outputs), source, target


# Largest |logit difference| tolerated, as a fraction of the logit range: float32 is exact up
# to rounding; float16 weights keep ~3 decimal digits; int8 weights/activations ~2.
TOLERANCE = {"tflite": 1e-5, "tflite_fp16": 1e-2, "tflite_dynamic": 5e-2, "tflite_int8": 1e-1}


def test_every_format_round_trips(trained, exported):
    model, _, (test_x, test_y) = trained
    out, exports, report = exported
    x = data.to_float(test_x)
    reference = model.predict(x, verbose=0)
    spread = reference.max() - reference.min()
    assert np.mean(np.argmax(reference, -1) == test_y) > 0.9
    assert set(exports) >= set(export.FORMATS) | {"report", "tflite_accuracy", "tflite_agreement"}
    reloaded = keras.saving.load_model(out / exports["keras"])
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), reference, atol=1e-5)
    serve = tf.saved_model.load(str(out / exports["savedmodel"])).signatures["serve"]
    np.testing.assert_allclose(serve(inputs=tf.constant(x))["logits"].numpy(), reference, atol=1e-5)
    for name, tolerance in TOLERANCE.items():
        logits, source, target = run_interpreter(out / exports[name], x)
        difference = np.abs(logits - reference).max()
        assert difference <= tolerance * spread, (name, difference, spread)
        assert np.isfinite(logits).all()
        entry = report["formats"][name]
        assert entry["max_abs_logit_diff"] == pytest.approx(difference, rel=1e-3, abs=1e-6)
        assert entry["mean_abs_logit_diff"] == pytest.approx(
            np.abs(logits - reference).mean(), rel=1e-3, abs=1e-6
        )
        assert entry["accuracy"] == pytest.approx(np.mean(np.argmax(logits, -1) == test_y))
        agreement = np.mean(np.argmax(logits, -1) == np.argmax(reference, -1))
        assert entry["agreement"] == pytest.approx(agreement)
        assert entry["size_bytes"] == os.path.getsize(out / exports[name])
        expected_dtype = "int8" if name == "tflite_int8" else "float32"
        assert entry["input"]["dtype"] == source["dtype"].__name__ == expected_dtype
        assert entry["output"]["dtype"] == target["dtype"].__name__ == expected_dtype
        assert entry["input"]["shape"] == [None, *SHAPE]
    assert report["formats"]["tflite"]["agreement"] == 1.0
    assert exports["tflite_agreement"] == report["formats"]["tflite"]["agreement"]
    assert (
        report["formats"]["tflite_int8"]["size_bytes"]
        < report["formats"]["tflite"]["size_bytes"]
        < report["formats"]["savedmodel"]["size_bytes"]
    )


def test_report_schema_and_markdown(trained, exported):
    model, _, (test_x, test_y) = trained
    out, _, report = exported
    keras_accuracy = np.mean(
        np.argmax(model.predict(data.to_float(test_x), verbose=0), -1) == test_y
    )
    assert report["keras"]["accuracy"] == pytest.approx(keras_accuracy)
    assert report["test_examples"] == len(test_y)
    assert set(report["formats"]) == set(export.FORMATS) - {"keras"}
    for entry in report["formats"].values():
        for key in (
            "accuracy",
            "agreement",
            "max_abs_logit_diff",
            "size_bytes",
            "latency_ms_median",
            "throughput_per_s",
        ):
            assert isinstance(entry[key], (int, float)) and entry[key] >= 0, key
        assert entry["latency_ms_median"] > 0 and entry["throughput_per_s"] > 0
    saved_model = out / "saved_model"
    files = [
        os.path.join(folder, name) for folder, _, names in os.walk(saved_model) for name in names
    ]
    assert report["formats"]["savedmodel"]["size_bytes"] == sum(map(os.path.getsize, files))
    assert report["formats"]["tflite_fp16"]["size_ratio"] == pytest.approx(
        report["formats"]["tflite_fp16"]["size_bytes"] / report["formats"]["tflite"]["size_bytes"]
    )
    assert report["settings"]["int8_io"] == "int8"
    assert report["settings"]["latency_calls"] == 200
    markdown = (out / "export_report.md").read_text()
    for name in export.FORMATS:
        assert f"| {name} |" in markdown
    assert "`images`: uint8 [batch, 8, 8, 1]" in markdown
    assert "`inputs`: float32 [batch, 8, 8, 1]" in markdown
    assert "| int8_size_ratio |" in markdown


def test_uint8_signature_equals_dividing_by_255_then_serve(trained, exported):
    model, _, _ = trained
    out, _, report = exported
    loaded = tf.saved_model.load(str(out / "saved_model"))
    pixels = np.random.default_rng(5).integers(0, 256, (40, *SHAPE)).astype(np.uint8)
    from_uint8 = loaded.signatures["serve_uint8"](images=tf.constant(pixels))["logits"].numpy()
    by_hand = pixels.astype(np.float64) / 255.0
    from_float = loaded.signatures["serve"](inputs=tf.constant(by_hand, tf.float32))
    np.testing.assert_allclose(from_uint8, from_float["logits"].numpy(), atol=1e-5)
    np.testing.assert_allclose(from_uint8, model(by_hand.astype(np.float32)).numpy(), atol=1e-5)
    spec = loaded.signatures["serve_uint8"].structured_input_signature[1]["images"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, *SHAPE]
    parity = report["formats"]["savedmodel"]["uint8"]
    assert parity["agreement"] == 1.0 and parity["max_abs_logit_diff"] < 1e-4
    assert report["formats"]["savedmodel"]["signatures"]["serve_uint8"]["dtype"] == "uint8"


def test_vector_models_get_no_uint8_signature(tmp_path):
    model = models.build("mlp_small", (6,), CLASSES, seed=0)
    export.save_saved_model(model, tmp_path / "saved_model")
    signatures = tf.saved_model.load(str(tmp_path / "saved_model")).signatures
    assert "serve" in signatures and "serve_uint8" not in signatures


def test_representative_dataset_yields_distinct_training_rows():
    train = np.random.default_rng(0).integers(0, 256, (50, 4, 4, 1)).astype(np.uint8)
    samples = [batch for (batch,) in export.representative_dataset(train, samples=20, seed=3)()]
    assert len(samples) == 20
    rows = {row.tobytes(): index for index, row in enumerate(data.to_float(train))}
    chosen = [rows[sample[0].tobytes()] for sample in samples]
    assert all(sample.shape == (1, 4, 4, 1) and sample.dtype == np.float32 for sample in samples)
    assert len(set(chosen)) == 20
    again = [
        rows[batch[0][0].tobytes()]
        for batch in export.representative_dataset(train, samples=20, seed=3)()
    ]
    assert again == chosen
    assert len(list(export.representative_dataset(train, samples=500)())) == 50
    with pytest.raises(ValueError, match="samples"):
        export.representative_dataset(train, samples=0)


def run_export(*args):
    """What `bin/export ARGS` runs, in this process; returns export_report.json's dictionary."""
    return common.run_tool(export_cli.main, ["bin/export", *args])


@pytest.fixture(scope="module")
def npz_task(tmp_path_factory):
    """An npz data set of distinct random images and an untrained model that fits it."""
    root = tmp_path_factory.mktemp("npz")
    rng = np.random.default_rng(7)
    for split, count in (("train", 120), ("test", 40)):
        np.savez(
            root / f"{split}.npz",
            x=rng.integers(0, 256, (count, *SHAPE), dtype=np.uint8),
            y=np.arange(count) % CLASSES,
        )
    models.build("cnn_small", SHAPE, CLASSES, seed=0).save(root / "model.keras")
    inputs = keras.Input((None, None, 1))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    keras.Model(inputs, keras.layers.Dense(CLASSES)(pooled)).save(root / "any_size.keras")
    return root


def test_bin_export_calibrates_on_the_training_split_only(npz_task, tmp_path, monkeypatch):
    seen = {"arrays": [], "samples": []}
    original = export.representative_dataset

    def spy(train_images, *args, **kwargs):
        seen["arrays"].append(train_images)
        generate = original(train_images, *args, **kwargs)

        def recording():
            for batch in generate():
                seen["samples"].append(batch[0])
                yield batch

        return recording

    monkeypatch.setattr(export, "representative_dataset", spy)
    out = tmp_path / "out"
    report = run_export(
        f"--model={npz_task / 'model.keras'}",
        f"--dataset=npz:{npz_task}",
        "--formats=tflite,tflite_int8",
        f"--output_dir={out}",
        "--representative_samples=1000",
        "--latency_calls=200",
        "--verbose=0",
    )
    bundle = data.load(experiment.RunConfig.from_flags([f"--dataset=npz:{npz_task}"]).data)
    assert len(seen["arrays"]) == 1 and np.array_equal(seen["arrays"][0], bundle.train[0])
    rows = lambda x: {row.tobytes() for row in data.to_float(x)}  # noqa: E731
    sampled = {sample[0].tobytes() for sample in seen["samples"]}
    assert sampled == rows(bundle.train[0])  # every training example, as 1000 > 108
    assert not sampled & rows(bundle.test[0]) and not sampled & rows(bundle.validation[0])
    assert sorted(os.listdir(out)) == [
        "export_report.json",
        "export_report.md",
        "student.tflite",
        "student_int8.tflite",
    ]
    assert json.loads((out / "export_report.json").read_text()) == report
    assert report["test_examples"] == 40 and set(report["formats"]) == {"tflite", "tflite_int8"}
    assert not glob.glob(str(tmp_path / "out.partial*"))


def test_int8_with_float_io_keeps_float_tensors(trained, tmp_path):
    model, train, test = trained
    exports = export.export_student(
        model,
        tmp_path,
        ["tflite_int8"],
        test_data=test,
        train_images=train[0],
        settings=export.ExportSettings(
            verbose=False, int8_io="float", representative_samples=100, measurement=FAST_REPORT
        ),
    )
    assert sorted(os.listdir(tmp_path)) == [
        "export_report.json",
        "export_report.md",
        "student_int8.tflite",
    ]
    logits, source, target = run_interpreter(
        tmp_path / exports["tflite_int8"], data.to_float(test[0])
    )
    assert source["dtype"] == np.float32 and target["dtype"] == np.float32
    reference = model.predict(data.to_float(test[0]), verbose=0)
    assert np.abs(logits - reference).max() <= 0.1 * (reference.max() - reference.min())


def test_export_student_bad_arguments(trained, tmp_path):
    model, train, _ = trained
    with pytest.raises(ValueError, match="unknown format.*nope.*tflite_int8"):
        export.export_student(model, tmp_path, ["tflite", "nope"])
    with pytest.raises(ValueError, match="train_images"):
        export.export_student(model, tmp_path, ["tflite_int8"])
    with pytest.raises(ValueError, match="int8_io.*int8, float"):
        export.export_student(
            model,
            tmp_path,
            ["tflite_int8"],
            train_images=train[0],
            settings=export.ExportSettings(int8_io="uint4"),
        )
    assert not os.listdir(tmp_path)
    export.export_student(model, tmp_path, ["keras"], settings=QUIET)
    first = (tmp_path / "student.keras").read_bytes()
    with pytest.raises(FileExistsError, match="student.keras.*overwrite"):
        export.export_student(model, tmp_path, ["keras"], settings=QUIET)
    assert (tmp_path / "student.keras").read_bytes() == first  # refused: left as it was
    changed = keras.models.clone_model(model)  # the fixture's model stays as it is
    changed.set_weights([*model.get_weights()[:-1], np.ones(CLASSES, "float32")])
    export.export_student(
        changed, tmp_path, ["keras"], settings=export.ExportSettings(verbose=False, overwrite=True)
    )
    assert (keras.saving.load_model(tmp_path / "student.keras").get_weights()[-1] == 1).all()


def test_distill_accepts_the_export_format_names():
    experiment.job.check(
        experiment.RunConfig.from_flags(
            ["--export=savedmodel,tflite_fp16,tflite_dynamic,tflite_int8"]
        )
    )
    with pytest.raises(ValueError, match="--export.*tflite_int4"):
        experiment.job.check(experiment.RunConfig.from_flags(["--export=tflite,tflite_int4"]))


def test_a_failed_export_leaves_nothing_and_existing_output_needs_overwrite(
    npz_task, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    args = [
        f"--model={npz_task / 'model.keras'}",
        f"--dataset=npz:{npz_task}",
        "--formats=savedmodel,tflite",
        f"--output_dir={out}",
        "--verbose=0",
    ]

    def broken(*_args, **_kwargs):
        raise RuntimeError("converter failed")

    monkeypatch.setattr(export, "convert_tflite", broken)
    with pytest.raises(RuntimeError, match="converter failed"):
        run_export(*args)
    assert not out.exists() and not glob.glob(str(tmp_path / "out.partial*"))
    monkeypatch.undo()
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(FileExistsError, match="^--output_dir .*--overwrite"):
        export_cli.main(["bin/export", *args])
    with pytest.raises(FileExistsError, match="^output_dir .*overwrite=True"):
        tools.export_model(
            str(npz_task / "model.keras"),
            experiment.RunConfig.from_flags([f"--dataset=npz:{npz_task}"]).data,
            str(out),
            formats=["tflite"],
        )
    assert (out / "old.txt").read_text() == "old"
    run_export(*args, "--overwrite", "--latency_calls=200")
    assert sorted(os.listdir(out)) == [
        "export_report.json",
        "export_report.md",
        "saved_model",
        "student.tflite",
    ]


def run_cli(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TFKD_DEBUG", None)
    return subprocess.run(
        [sys.executable, EXPORT, *args], capture_output=True, text=True, timeout=300, env=env
    )


def run_app(capsys, monkeypatch, *args):
    """bin/export's main through the same error handling, in this process: (exit code, stderr)."""
    monkeypatch.delenv("TFKD_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        run_export(*args)
    return exit_info.value.code, capsys.readouterr().err


BAD_CASES = {
    "missing_model": (
        ["--model={root}/missing.keras"],
        ["--model", "missing.keras", "does not exist"],
    ),
    "unknown_format": (
        ["--formats=tflite,tflite_int4"],
        ["--formats", "tflite_int4", "tflite_int8"],
    ),
    "no_fixed_input_shape": (["--model={root}/any_size.keras"], ["--model", "not fixed"]),
    "wrong_dataset": (["--dataset=synthetic", "--synthetic_size=100"], ["(8, 8, 1)", "(100,)"]),
    "no_output_dir": (["--output_dir="], ["--output_dir is required"]),
}


def assert_one_clear_line(code, stderr, fragments):
    assert code == 2, stderr
    assert "Traceback" not in stderr, stderr
    error_lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, stderr
    for fragment in fragments:
        assert fragment in error_lines[0], stderr


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_gives_one_clear_line(case, npz_task, tmp_path, capsys, monkeypatch):
    extra, fragments = BAD_CASES[case]
    args = [
        f"--model={npz_task / 'model.keras'}",
        f"--dataset=npz:{npz_task}",
        f"--output_dir={tmp_path / 'out'}",
        *(arg.format(root=npz_task) for arg in extra),
    ]
    assert_one_clear_line(*run_app(capsys, monkeypatch, *args), fragments)
    assert not (tmp_path / "out").exists()


def test_bin_export_launcher_reports_a_missing_model(tmp_path):
    result = run_cli(f"--model={tmp_path / 'missing.keras'}", f"--output_dir={tmp_path / 'out'}")
    assert_one_clear_line(result.returncode, result.stderr, ["--model", "does not exist"])
    assert result.stderr.startswith("export: error:") or "\nexport: error:" in result.stderr


def test_bin_export_help_lists_its_flags_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_export("--help")
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    for name in (
        "--model",
        "--formats",
        "--int8_io",
        "--representative_samples",
        "--latency_calls",
        "--num_threads",
        "--output_dir",
        "--[no]overwrite",
        "--dataset",
    ):
        assert f"  {name}:" in printed, name
    assert "--teacher" not in printed and "--epochs" not in printed


def test_goals_against_hand_computed_values():
    formats = {
        "tflite": {"agreement": 0.9985, "size_bytes": 1000, "size_ratio": 1.0},
        "tflite_int8": {"accuracy": 0.885, "size_bytes": 300, "size_ratio": 0.3},
    }
    goals = export_report.goals({"accuracy": 0.9}, formats)
    assert goals["float32_agreement"]["met"] is False
    assert goals["int8_accuracy_drop"]["value"] == pytest.approx(0.015)
    assert goals["int8_accuracy_drop"]["met"] is False
    assert goals["int8_size_ratio"]["met"] is True
    formats["tflite_int8"]["accuracy"] = 0.905
    assert export_report.goals({"accuracy": 0.9}, formats)["int8_accuracy_drop"]["met"] is True
    assert export_report.goals({"accuracy": 0.9}, {}) == {}


def test_latency_is_the_median_after_warm_up(monkeypatch):
    clock = types.SimpleNamespace(now=100.0)  # moved by the calls only: each takes its duration
    monkeypatch.setattr(
        export_report, "time", types.SimpleNamespace(perf_counter=lambda: clock.now)
    )
    durations = iter([1.0] * 5 + [0.001 * k for k in range(1, 21)])  # warm-up calls: 1 s each
    # The median of 1, 2, ..., 20 ms; the slow warm-up calls are not timed.
    assert export_report.median_latency_ms(
        lambda: setattr(clock, "now", clock.now + next(durations)), calls=20, warmup=5
    ) == pytest.approx(10.5)
    calls = []  # one untimed call, then timed ones of 4 ms until 0.05 s have passed
    rate = export_report.throughput_per_s(
        lambda: (calls.append(1), setattr(clock, "now", clock.now + 0.004)), batch=10, seconds=0.05
    )
    assert rate == pytest.approx(10 / 0.004) and len(calls) == 1 + 13
