"""tfkd.analysis against NumPy and closed forms; bin/analyze and the partial methods end to end."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from cli_helpers import run_distill
from partial_reference import softmax

from tfkd import analysis, data, experiment
from tfkd.cli import analyze, common
from tfkd.experiment import teacher_knowledge

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_DATA = [
    "--dataset=synthetic",
    "--synthetic_size=800",
    "--synthetic_dim=10",
    "--synthetic_classes=6",
    "--synthetic_superclasses=2",
    "--class_similarity=0.8",
    "--difficulty=1",
]
TINY = TINY_DATA + [
    "--teacher=mlp",
    "--teacher_epochs=2",
    "--student=mlp_small",
    "--epochs=1",
    "--batch_size=64",
    "--optimizer=adam",
    "--learning_rate=0.01",
    "--verbose=0",
    "--export=keras",
]


def run_analyze(args):
    """What `bin/analyze ARGS` runs, in this process; returns analysis.json's dictionary."""
    return common.run_tool(analyze.main, ["bin/analyze", *args])


def _probs(n=200, k=5, seed=0):
    rng = np.random.default_rng(seed)
    return softmax(2.0 * rng.normal(size=(n, k)))


def test_class_correlation_is_numpy_corrcoef_between_class_columns():
    probs = _probs()
    np.testing.assert_allclose(
        analysis.class_correlation(probs), np.corrcoef(probs, rowvar=False), atol=1e-10
    )


def test_class_correlation_of_a_constant_class_is_zero_off_the_diagonal():
    probs = _probs(k=4)
    probs = np.concatenate([probs * 0.5, np.full((len(probs), 1), 0.5)], axis=1)
    correlation = analysis.class_correlation(probs)
    np.testing.assert_array_equal(correlation[4, :4], 0.0)
    assert correlation[4, 4] == 1.0


def test_classifier_cosine_and_block_contrast():
    weights = np.array([[1.0, 0.0], [2.0, 0.1], [0.0, 3.0], [0.1, 1.0]])
    cosine = analysis.classifier_cosine(weights)
    unit = weights / np.linalg.norm(weights, axis=1, keepdims=True)
    np.testing.assert_allclose(cosine, unit @ unit.T, atol=1e-6)
    superclass_of = np.array([0, 0, 1, 1])
    within = (cosine[0, 1] + cosine[2, 3]) / 2
    across = cosine[:2, 2:].mean()
    assert analysis.block_contrast(cosine, superclass_of) == pytest.approx(within - across)
    np.testing.assert_array_equal(analysis.superclass_order([1, 0, 1, 0]), [1, 3, 0, 2])


def test_logit_gradients_match_the_closed_form():
    """d CE / dz = q - y and d [T^2 KL(p || softmax(z / T))] / dz = T (q^T - p)."""
    rng = np.random.default_rng(1)
    logits, teacher_logits = rng.normal(size=(2, 12, 5)) * 2.0
    labels = rng.integers(0, 5, 12)
    temperature, alpha = 3.0, 0.8
    p = softmax(teacher_logits / temperature)
    ce, kd = analysis.logit_gradients(logits, labels, p, temperature, alpha)
    y = np.eye(5)[labels]
    expected_ce = softmax(logits) - y
    expected_kd = (1 - alpha) * expected_ce + alpha * temperature * (
        softmax(logits / temperature) - p
    )
    np.testing.assert_allclose(ce, expected_ce, atol=1e-5)
    np.testing.assert_allclose(kd, expected_kd, atol=1e-5)
    w, p_true = analysis.gradient_rescaling(logits, teacher_logits, labels, temperature, alpha)
    np.testing.assert_allclose(
        w, np.linalg.norm(expected_kd, axis=1) / np.linalg.norm(expected_ce, axis=1), rtol=1e-4
    )
    np.testing.assert_allclose(p_true, p[np.arange(12), labels], rtol=1e-6)


def test_binary_rescaling_grows_with_teacher_confidence():
    """Two classes, student logits 0: w = (1 - alpha) + 2 alpha T (p_t - 1/2) for p_t >= 1/2."""
    p_true = np.linspace(0.55, 0.99, 9)
    temperature, alpha = 2.0, 0.5
    teacher_logits = temperature * np.stack([np.log(p_true), np.log(1 - p_true)], axis=1)
    w, got_p = analysis.gradient_rescaling(
        np.zeros((9, 2)), teacher_logits, np.zeros(9, int), temperature, alpha
    )
    np.testing.assert_allclose(got_p, p_true, rtol=1e-6)
    np.testing.assert_allclose(w, (1 - alpha) + 2 * alpha * temperature * (p_true - 0.5), rtol=1e-4)
    assert analysis.pearson(w, got_p) == pytest.approx(1.0)
    assert analysis.spearman(w, got_p) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One tiny bin/distill run (kd_sim) whose teacher and student the other tests reuse."""
    out = tmp_path_factory.mktemp("runs") / "kd_sim"
    results = run_distill(TINY + ["--method=kd_sim", f"--output_dir={out}"])
    return out, results


def test_distill_kd_sim_and_ls_runs(trained_run, tmp_path):
    out, results = trained_run
    assert results["method"] == "kd_sim" and results["flags"]["sim_temperature"] == 0.1
    assert (out / "teacher.keras").exists() and (out / "student.keras").exists()
    ls_results = run_distill(
        TINY
        + [
            "--method=ls",
            "--epsilon=0.2",
            f"--output_dir={tmp_path / 'ls'}",
            "--teacher=not_a_model",
        ]
    )  # LS needs no teacher: the bad --teacher is never read
    assert "teacher" not in ls_results and "teacher" not in ls_results["seconds"]
    assert ls_results["flags"]["epsilon"] == 0.2
    topk = run_distill(
        TINY
        + [
            "--method=kd_topk",
            "--topk=2",
            f"--output_dir={tmp_path / 'top'}",
            f"--teacher={out / 'teacher.keras'}",
        ]
    )
    assert topk["teacher"]["accuracy"] == pytest.approx(results["teacher"]["accuracy"])


def test_analyze_writes_plots_and_numbers(trained_run, tmp_path):
    out, _ = trained_run
    target = tmp_path / "analysis"
    results = run_analyze(
        TINY_DATA
        + [
            f"--teacher={out / 'teacher.keras'}",
            f"--student_model={out / 'student.keras'}",
            f"--output_dir={target}",
            "--analysis_temperatures=1,3",
            "--analysis_split=test",
            "--temperature=3",
            "--alpha=0.7",
            "--verbose=0",
        ]
    )
    for name in ("class_relationships.png", "gradient_rescaling.png", "analysis.json"):
        assert (target / name).stat().st_size > 200, name
    assert json.loads((target / "analysis.json").read_text()) == json.loads(json.dumps(results))
    # recompute every number from the saved models
    bundle = data.load(experiment.RunConfig.from_flags(TINY_DATA).data)
    x, y = data.to_float(bundle.test[0]), bundle.test[1]
    teacher = keras.saving.load_model(out / "teacher.keras")
    student = keras.saving.load_model(out / "student.keras")
    teacher_logits, student_logits = teacher.predict(x, verbose=0), student.predict(x, verbose=0)
    assert results["examples"] == len(y)
    assert results["teacher_accuracy"] == pytest.approx(np.mean(teacher_logits.argmax(-1) == y))
    relationships = results["class_relationships"]
    assert relationships["superclass_of"] == [0, 0, 0, 1, 1, 1]
    correlation = np.corrcoef(softmax(teacher_logits / 3.0), rowvar=False)
    same = np.equal.outer([0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1])
    contrast = correlation[same & ~np.eye(6, dtype=bool)].mean() - correlation[~same].mean()
    assert relationships["correlation"]["3"]["block_contrast"] == pytest.approx(contrast, abs=1e-4)
    weights = teacher.get_layer("classifier").kernel.numpy().T
    unit = weights / np.linalg.norm(weights, axis=1, keepdims=True)
    mask = ~np.eye(6, dtype=bool)
    expected = np.corrcoef(correlation[mask], (unit @ unit.T)[mask])[0, 1]
    assert relationships["correlation"]["3"]["pearson_with_cosine"] == pytest.approx(
        expected, abs=1e-4
    )
    w, p_true = analysis.gradient_rescaling(student_logits, teacher_logits, y, 3.0, 0.7)
    entry = results["gradient_rescaling"]
    assert entry["pearson_w_pt"] == pytest.approx(np.corrcoef(w, p_true)[0, 1], abs=1e-4)
    assert entry["temperature"] == 3.0 and entry["alpha"] == 0.7


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--teacher=/nonexistent.keras"], "--teacher must name a trained teacher"),
        (["--analysis_temperatures=1,0"], "--analysis_temperatures must be"),
        (["--student_model=resnet_9000"], "--student_model: 'resnet_9000' is neither"),
        (["--superclass_map=/nonexistent.json"], "--superclass_map: /nonexistent.json does not"),
    ],
)
def test_analyze_bad_input(trained_run, tmp_path, extra, message, capsys, monkeypatch):
    out, _ = trained_run
    monkeypatch.delenv("TFKD_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        run_analyze(
            TINY_DATA
            + [
                f"--teacher={out / 'teacher.keras'}",
                "--verbose=0",
                f"--output_dir={tmp_path / 'a'}",
                *extra,
            ]
        )
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"analyze: error: {message}"), lines
    assert not (tmp_path / "a").exists()


def test_analyze_library_names_the_argument(trained_run, tmp_path):
    out, _ = trained_run
    data_config = experiment.RunConfig.from_flags(TINY_DATA).data
    teacher = str(out / "teacher.keras")
    with pytest.raises(ValueError, match="^analysis_temperatures must be numbers > 0"):
        teacher_knowledge.analyze(
            teacher,
            data_config,
            str(tmp_path / "a"),
            options=teacher_knowledge.AnalysisOptions(analysis_temperatures=[1, 0]),
        )
    with pytest.raises(ValueError, match="^analysis_split must be one of train, validation"):
        teacher_knowledge.analyze(
            teacher,
            data_config,
            str(tmp_path / "a"),
            options=teacher_knowledge.AnalysisOptions(analysis_split="dev"),
        )
    with pytest.raises(ValueError, match="^output_dir is required"):
        teacher_knowledge.analyze(teacher, data_config, None)
    assert not (tmp_path / "a").exists()


def test_analyze_help_lists_its_flags_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_analyze(["--help"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    for name in (
        "--teacher",
        "--student_model",
        "--analysis_temperatures",
        "--analysis_split",
        "--analysis_examples",
        "--temperature",
        "--alpha",
        "--superclass_map",
        "--classifier_layer",
        "--output_dir",
        "--dataset",
    ):
        assert f"  {name}:" in printed, name
    assert "--epochs" not in printed and "--method" not in printed


def test_bad_partial_flags_are_one_line_errors(tmp_path):
    command = [
        sys.executable,
        os.path.join(ROOT, "bin", "distill"),
        *TINY,
        "--method=kd_rel",
        "--superclass_map=/nonexistent/map.json",
        f"--output_dir={tmp_path / 'x'}",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": ROOT}
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("distill: error")]
    assert lines == ["distill: error: --superclass_map: /nonexistent/map.json does not exist"]
