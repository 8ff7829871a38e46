"""The end-to-end causal-LM run on tiny models: report, store, flags."""

import json
import os

import pytest

from tfkd.data import language_modeling as lm_data
from tfkd.lm.run import LMRunConfig, run
from tfkd.models import gpt as lm_models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_models(tmp_path):
    paths = []
    for seed, hidden in ((1, 32), (2, 16)):
        model = lm_models.gpt2_causal_lm(
            lm_data.ByteTokenizer.vocabulary_size,
            1,
            hidden,
            2,
            16,
            seed=seed,
            name=f"tiny_{hidden}",
        )
        paths.append(str(tmp_path / f"model_{hidden}.keras"))
        model.save(paths[-1])
    return paths


def _corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(f"line {i} of the corpus" for i in range(20)))
    return f"lm:{path}"


def test_run_reports_perplexities_and_distils_from_the_store(tmp_path):
    teacher, student = _tiny_models(tmp_path)
    config = LMRunConfig(
        dataset=_corpus(tmp_path),
        sequence_length=16,
        teacher=teacher,
        student=student,
        epochs=1,
        batch_size=8,
        teacher_cache="disk",
        cache_topk=4,
        samples=2,
        max_new_tokens=4,
        output_dir=str(tmp_path / "run"),
    )
    results = run(config)
    written = json.loads((tmp_path / "run" / "results.json").read_text())
    for role in ("teacher", "student", "baseline"):
        assert written[role]["perplexity"] == pytest.approx(written[role]["test"]["perplexity"])
        assert written[role]["test"]["perplexity"] == pytest.approx(
            2.718281828 ** written[role]["test"]["nll"], rel=1e-6
        )
    assert results["store"]["bytes_per_token"] == 4 * 4 + 4 * 2 + 4
    assert results["data"]["vocabulary_size"] == 259 and len(results["samples"]) == 2
    assert (tmp_path / "run" / "history.csv").read_text().startswith("epoch")
    assert (tmp_path / "run" / "student.keras").exists()


def test_flags_and_flagfile_parse_into_the_config(tmp_path):
    flagfile = tmp_path / "run.flags"
    flagfile.write_text("# a comment\n--divergence=jsd\n--jsd_beta=0.25\n--nobaseline\n")
    config = LMRunConfig.from_flags(
        [f"--flagfile={flagfile}", "--epochs=2", "--output_dir=/tmp/out"]
    )
    assert (config.divergence, config.jsd_beta, config.baseline, config.epochs) == (
        "jsd",
        0.25,
        False,
        2,
    )
    shipped = LMRunConfig.from_flags(
        [f"--flagfile={ROOT}/docs/lm/stdlib_gpt.flags", "--output_dir=/tmp/out"]
    )
    shipped.check()
    assert (shipped.teacher, shipped.student) == ("gpt_small", "gpt_tiny")


def test_bad_flags_are_refused_by_name():
    with pytest.raises(ValueError, match="unknown flag --divergnce"):
        LMRunConfig.from_flags(["--divergnce=jsd"])
    with pytest.raises(ValueError, match="--epochs expects a int, got 'two'"):
        LMRunConfig.from_flags(["--epochs=two"])
    with pytest.raises(ValueError, match="--divergence must be one of"):
        LMRunConfig(divergence="kl", output_dir="/tmp/out").check()
    with pytest.raises(ValueError, match="--teacher_cache=disk cannot serve --on_policy_fraction"):
        LMRunConfig(teacher_cache="disk", on_policy_fraction=0.5, output_dir="/tmp/x").check()
    with pytest.raises(ValueError, match="--max_new_tokens must be a positive integer"):
        LMRunConfig(max_new_tokens=0, output_dir="/tmp/out").check()
