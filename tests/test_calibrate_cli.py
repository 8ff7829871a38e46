"""bin/distill --calibrate_teacher and bin/calibrate on tiny synthetic data."""

import json
import os
import re
import subprocess
import sys

import cli_helpers
import keras
import numpy as np
import pytest

from tfkd import calibration, data, experiment
from tfkd.cli import calibrate, common
from tfkd.experiment import distillation, tools
from tfkd.exporting import student as export

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = [
    "--dataset=synthetic",
    "--synthetic_size=600",
    "--synthetic_dim=12",
    "--synthetic_classes=4",
    "--synthetic_superclasses=2",
]
TRAIN = [
    "--teacher_epochs=2",
    "--student=mlp_small",
    "--epochs=1",
    "--batch_size=64",
    "--optimizer=adam",
    "--learning_rate=0.01",
    "--verbose=0",
    "--export=keras",
]


def run_distill(args, recorded):
    """bin/distill's run() with `distillation.distill` spied on: records the teacher and options."""
    original = distillation.distill

    def spy(method, config, options, teacher, bundle, *rest):
        recorded.update(teacher=teacher, options=dict(options), bundle=bundle)
        return original(method, config, options, teacher, bundle, *rest)

    distillation.distill = spy
    try:
        return cli_helpers.run_distill(args)
    finally:
        distillation.distill = original


def run_calibrate(args):
    """What `bin/calibrate ARGS` runs, in this process; returns calibration.json's dictionary."""
    return common.run_tool(calibrate.main, ["bin/calibrate", *args])


def calibrate_error(args, capsys, monkeypatch):
    """bin/calibrate ARGS in this process, expected to fail: its one stderr line."""
    monkeypatch.delenv("TFKD_DEBUG", raising=False)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_calibrate(args)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("calibrate: error: "), lines
    return lines[0]


def logits(model, split):
    return model.predict(data.to_float(split[0]), verbose=0).astype(np.float64)


@pytest.fixture(scope="module")
def scale_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("scale") / "run"
    recorded = {}
    # No --calibration_mode: the default is scale.
    results = run_distill(
        DATA + TRAIN + ["--teacher=mlp", "--calibrate_teacher", f"--output_dir={out}"], recorded
    )
    return out, results, recorded


def test_calibrate_teacher_scale_fits_on_validation_and_measures_test(scale_run):
    out, results, recorded = scale_run
    teacher = keras.saving.load_model(out / "teacher.keras")
    bundle = recorded["bundle"]
    validation, test = logits(teacher, bundle.validation), logits(teacher, bundle.test)
    expected_t = calibration.fit_temperature(validation, bundle.validation[1])
    got = results["calibration"]
    assert got["temperature"] == pytest.approx(expected_t, rel=1e-4)
    assert got["mode"] == "scale" and got["fit_split"] == "validation"
    for when, t in (("before", 1.0), ("after", got["temperature"])):
        assert got[f"ece_{when}"] == pytest.approx(
            calibration.expected_calibration_error(calibration.softmax(test, t), bundle.test[1]),
            abs=1e-4,
        )
        assert got[f"nll_{when}"] == pytest.approx(
            calibration.negative_log_likelihood(test, bundle.test[1], t), rel=1e-4
        )
        assert (out / f"reliability_{when}.png").stat().st_size > 5000
    assert got["nll_after"] <= got["nll_before"] + 0.05  # fitted on validation, measured on test
    assert json.loads((out / "results.json").read_text())["calibration"] == got
    # The method saw the calibrated teacher (logits / T*) and its own temperature.
    x = data.to_float(bundle.test[0][:32])
    np.testing.assert_allclose(
        recorded["teacher"].predict(x, verbose=0),
        teacher.predict(x, verbose=0) / got["temperature"],
        rtol=1e-5,
    )
    assert recorded["options"]["temperature"] == 4.0 == got["distillation_temperature"]


def test_calibrate_teacher_replace_sets_the_distillation_temperature(scale_run, tmp_path):
    out, first, _ = scale_run
    recorded = {}
    results = run_distill(
        DATA
        + TRAIN
        + [
            f"--teacher={out / 'teacher.keras'}",
            "--calibrate_teacher",
            "--calibration_mode=replace",
            f"--output_dir={tmp_path / 'run'}",
        ],
        recorded,
    )
    temperature = results["calibration"]["temperature"]
    assert temperature == pytest.approx(first["calibration"]["temperature"], rel=1e-6)
    assert recorded["options"]["temperature"] == temperature
    assert results["calibration"]["distillation_temperature"] == temperature
    teacher = keras.saving.load_model(out / "teacher.keras")
    x = data.to_float(recorded["bundle"].test[0][:32])
    np.testing.assert_allclose(
        recorded["teacher"].predict(x, verbose=0), teacher.predict(x, verbose=0), rtol=1e-6
    )
    assert results["flags"]["calibration_mode"] == "replace"


def test_calibrate_teacher_needs_a_validation_split(tmp_path):
    with pytest.raises(ValueError, match="--validation_fraction"):
        cli_helpers.run_distill(
            DATA
            + TRAIN
            + ["--calibrate_teacher", "--validation_fraction=0", f"--output_dir={tmp_path / 'run'}"]
        )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("save_as", ["calibrated.keras", "calibrated_saved_model"])
def test_bin_calibrate_reports_and_saves_the_calibrated_model(scale_run, tmp_path, save_as, capsys):
    out, results, recorded = scale_run
    report = tmp_path / "report"
    summary = run_calibrate(
        DATA
        + [
            f"--model={out / 'teacher.keras'}",
            f"--save={tmp_path / save_as}",
            f"--report_dir={report}",
        ]
    )
    assert summary["temperature"] == pytest.approx(results["calibration"]["temperature"], rel=1e-6)
    for key in ("ece_before", "ece_after", "nll_before", "nll_after"):
        assert summary[key] == pytest.approx(results["calibration"][key], abs=1e-6)
    assert json.loads((report / "calibration.json").read_text()) == summary
    for when in ("before", "after"):
        assert (report / f"reliability_{when}.png").exists()
    printed = capsys.readouterr().out
    assert f"T* = {summary['temperature']:.4f}" in printed and "after" in printed
    x = data.to_float(recorded["bundle"].test[0][:32])
    raw = keras.saving.load_model(out / "teacher.keras").predict(x, verbose=0)
    if save_as.endswith(".keras"):
        calibrated = keras.saving.load_model(tmp_path / save_as).predict(x, verbose=0)
    else:
        calibrated = export.saved_model_predict(str(tmp_path / save_as), x)
    np.testing.assert_allclose(calibrated, raw / summary["temperature"], rtol=1e-5)


def test_bin_calibrate_rejects_a_model_for_other_data(tmp_path, capsys, monkeypatch):
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(3)])
    model.save(tmp_path / "three.keras")
    line = calibrate_error(
        DATA + [f"--model={tmp_path / 'three.keras'}", f"--report_dir={tmp_path / 'r'}"],
        capsys,
        monkeypatch,
    )
    assert re.search("--model gives 3 outputs.*4 classes", line), line
    assert "--model is required" in calibrate_error(DATA, capsys, monkeypatch)
    assert "--calibration_bins must be an integer >= 1" in calibrate_error(
        DATA + [f"--model={tmp_path / 'three.keras'}", "--calibration_bins=0"], capsys, monkeypatch
    )
    with pytest.raises(ValueError, match="^validation_fraction must be > 0"):
        tools.calibrate(
            str(tmp_path / "three.keras"),
            experiment.RunConfig.from_flags(DATA + ["--validation_fraction=0"]).data,
        )


def test_bin_calibrate_help_lists_its_flags_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_calibrate(["--help"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    for name in (
        "--model",
        "--model_input_scale",
        "--save",
        "--report_dir",
        "--dataset",
        "--calibration_bins",
    ):
        assert f"  {name}:" in printed, name
    assert "--teacher" not in printed and "--epochs" not in printed


@pytest.mark.parametrize(
    "tool,args,fragment",
    [
        ("calibrate", ["--model=/nonexistent/model.keras"], "--model"),
    ],
)
def test_tools_print_one_clear_line(tool, args, fragment, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TFKD_DEBUG", None)
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bin", tool), *DATA, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if f"{tool}: error:" in line]
    assert len(errors) == 1 and fragment in errors[0], result.stderr
