"""Causal-LM distillation through `tfkd.experiment.run(RunConfig)` on tiny models: the report
against NumPy, the top-k store, a killed and a preempted run resumed exactly, bad input."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from tiny_lms import softmax

from tfkd import experiment
from tfkd.data import language_modeling as lm_data
from tfkd.experiment import RunConfig
from tfkd.experiment.config import COMMAND_LINE
from tfkd.lm.__main__ import distill_args
from tfkd.models import gpt as lm_models
from tfkd.settings import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCABULARY = lm_data.ByteTokenizer.vocabulary_size
TIME, EPOCHS, BATCH = 16, 2, 8


def _files(folder):
    """A corpus of 40 short documents and two tiny GPT-2s saved as .keras files."""
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text(
        "\n\n".join(f"def f{i}(x): return x + {i}  # adds {i} to x" for i in range(40))
    )
    for name, seed, hidden in (("teacher", 1, 32), ("student", 2, 16)):
        model = lm_models.gpt2_causal_lm(VOCABULARY, 1, hidden, 2, TIME, seed=seed, name=name)
        model.save(str(folder / f"{name}.keras"))
    return folder


def _flags(folder, name, *extra):
    return [
        f"--dataset=lm:{folder}/corpus.txt",
        f"--sequence_length={TIME}",
        f"--teacher={folder}/teacher.keras",
        f"--student={folder}/student.keras",
        f"--epochs={EPOCHS}",
        f"--batch_size={BATCH}",
        "--optimizer=adam",
        "--learning_rate=0.01",
        "--lr_schedule=constant",
        "--weight_decay=0",
        "--temperature=2",
        "--alpha=0.7",
        "--teacher_cache=disk",
        "--cache_topk=8",
        "--export=keras",
        "--samples=2",
        "--max_new_tokens=4",
        "--deterministic",
        "--verbose=0",
        f"--cache_dir={folder}/cache",
        f"--output_dir={folder}/{name}",
        *extra,
    ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same run whole (with the student alone), killed (SIGKILL, in a subprocess) after
    step 1 of epoch 2 and then resumed, and preempted (SIGTERM) after step 3 of epoch 1 and
    resumed."""
    folder = _files(tmp_path_factory.mktemp("lm"))
    whole = experiment.run(RunConfig.from_flags(_flags(folder, "whole", "--baseline")))
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tfkd import experiment; "
            "experiment.run(experiment.RunConfig.from_flags(sys.argv[1:]))",
            *_flags(folder, "killed", "--samples=0"),
        ],
        env={**os.environ, "TFKD_FAULT": "distill:2:1", "TF_CPP_MIN_LOG_LEVEL": "3"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (folder / "killed.partial" / "checkpoints" / "distill" / "state.json").exists()
    resumed = experiment.run(RunConfig.from_flags(_flags(folder, "killed", "--samples=0")))
    os.environ["TFKD_FAULT"] = "distill:1:3:TERM"
    try:
        with pytest.raises(SystemExit, match="75"):
            experiment.run(RunConfig.from_flags(_flags(folder, "preempted", "--samples=0")))
    finally:
        del os.environ["TFKD_FAULT"]
    preempted = experiment.run(RunConfig.from_flags(_flags(folder, "preempted", "--samples=0")))
    return folder, {"whole": whole, "killed": resumed, "preempted": preempted}


def _numpy_nll(model_path, data, split):
    """Per-token NLL of a saved model on a split, from its logits: -log softmax at the next
    token, averaged over the weighted targets."""
    model = lm_models.load_causal_lm(model_path)
    x, y, weight = data.split(split).shifted()
    probs = softmax(np.asarray(model(x)))
    nll = -np.log(np.take_along_axis(probs, y[..., None], -1)[..., 0])
    return float((nll * weight).sum() / weight.sum())


def test_the_run_reports_perplexities_that_numpy_recomputes(runs):
    folder, results = runs
    whole = results["whole"]
    output = folder / "whole"
    data = lm_data.load_lm(str(folder / "corpus.txt"), TIME, seed=0)
    for role, path in (
        ("teacher", folder / "teacher.keras"),
        ("student", output / "student.keras"),
    ):
        for split in ("validation", "test"):
            nll = _numpy_nll(str(path), data, split)
            assert whole[role][split]["nll"] == pytest.approx(nll, rel=1e-4)
            assert whole[role][split]["perplexity"] == pytest.approx(np.exp(nll), rel=1e-4)
        assert whole[role]["perplexity"] == whole[role]["test"]["perplexity"]
    on_disk = json.loads((output / "results.json").read_text())
    assert on_disk["baseline"]["perplexity"] == pytest.approx(whole["baseline"]["perplexity"])
    assert on_disk["data"]["train"]["target_tokens"] == data.train.num_target_tokens
    # The store: k int32 ids, k float16 log-probabilities and a float32 tail per token.
    assert whole["store"]["k"] == 8 and whole["store"]["bytes_per_token"] == 8 * 4 + 8 * 2 + 4
    assert not whole["store"]["reused"] and whole["teacher"]["arch"].endswith("teacher.keras")
    with open(output / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == list(range(EPOCHS))
    assert float(rows[-1]["val_perplexity"]) == pytest.approx(
        np.exp(float(rows[-1]["val_student_loss"])), rel=1e-5
    )
    assert len(whole["samples"]) == 2 and all(s["prompt"] for s in whole["samples"])
    assert whole["flags"]["cache_topk"] == 8 and whole["options"]["temperature"] == 2
    assert "| student |" in (output / "report.md").read_text()


def test_a_killed_or_preempted_run_resumes_exactly_and_reuses_the_store(runs):
    folder, results = runs
    whole = results["whole"]
    for name in ("killed", "preempted"):
        resumed = results[name]
        assert resumed["resumed"] and resumed["store"]["reused"]
        assert resumed["store"]["directory"] == whole["store"]["directory"]
        for split in ("validation", "test"):
            assert resumed["student"][split]["nll"] == whole["student"][split]["nll"], name
        assert resumed["student"]["history"] == whole["student"]["history"], name
        assert (folder / name / "history.csv").read_text() == (
            folder / "whole" / "history.csv"
        ).read_text()


def _config(*extra):
    return RunConfig.from_flags(
        [
            "--dataset=stdlib",
            "--teacher=gpt_small",
            "--student=gpt_tiny",
            "--export=keras",
            *extra,
        ]
    )


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--teacher_cache=disk", "--cache_topk=300"],
            "--cache_topk=300 exceeds the vocabulary size 259",
        ),
        (
            ["--on_policy_fraction=0.5", "--max_new_tokens=0"],
            "--max_new_tokens=0 samples nothing, but --on_policy_fraction=0.5",
        ),
        (
            ["--teacher_cache=disk", "--on_policy_fraction=0.5"],
            "--on_policy_fraction=0.5 scores the student's own samples",
        ),
        (["--teacher_cache=replay"], "replay of augmented views does not apply to text"),
        (["--method=dkd"], "--method=dkd: a causal LM on --dataset=stdlib is distilled per"),
        (["--student=resnet8"], "--student: 'resnet8' is not a causal LM"),
        (["--prompt_column=question"], "--prompt_column names a field of prompt/completion"),
        (["--augment"], "--augment does not apply to a causal LM on --dataset=stdlib"),
    ],
)
def test_bad_options_are_refused_naming_the_flag(extra, message):
    with pytest.raises(ConfigError, match=message):
        _config(*extra)


def test_a_causal_lm_student_needs_language_model_data():
    with pytest.raises(ConfigError, match="'gpt_tiny' is a causal language model; it learns"):
        RunConfig.from_flags(["--dataset=synthetic", "--student=gpt_tiny"])


def test_a_missing_prompt_column_and_mismatched_vocabularies_are_refused(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "2 + 2 =", "answer": " 4"}\n' * 10)
    config = _config(
        f"--dataset=lm:{pairs}",
        "--completion_column=reply",
        f"--output_dir={tmp_path}/pairs",
    )
    with pytest.raises(
        ConfigError, match="lm.completion_column 'reply' is not a field of"
    ) as error:
        experiment.run(config)
    assert error.value.field == "lm.completion_column"
    assert "--completion_column 'reply'" in str(error.value.named(COMMAND_LINE.flag_name))
    assert not os.path.exists(f"{tmp_path}/pairs.partial")
    text = tmp_path / "text.txt"
    text.write_text("\n\n".join(f"document {i}" for i in range(10)))
    wide = lm_models.gpt2_causal_lm(300, 1, 16, 2, TIME, seed=0, name="wide")
    wide.save(str(tmp_path / "wide.keras"))
    lm_models.gpt2_causal_lm(VOCABULARY, 1, 16, 2, TIME, seed=0, name="narrow").save(
        str(tmp_path / "narrow.keras")
    )
    config = _config(
        f"--teacher={tmp_path}/wide.keras",
        f"--student={tmp_path}/narrow.keras",
        f"--dataset=lm:{text}",
        f"--output_dir={tmp_path}/vocabularies",
    )
    with pytest.raises(
        ConfigError,
        match="teacher.spec and student: student and teacher must share the tokenizer: student "
        "'narrow' has a vocabulary of 259 tokens, teacher 'wide' 300",
    ):
        experiment.run(config)


def test_the_recipe_and_the_python_m_alias_name_the_same_run():
    recipe = RunConfig.from_flags([f"--flagfile={ROOT}/tfkd/configs/lm.flags"])
    assert (recipe.teacher.spec, recipe.student, recipe.data.dataset) == (
        "gpt_small",
        "gpt_tiny",
        "stdlib",
    )
    assert recipe.method.options == {"divergence": "forward_kl", "temperature": 1.0, "alpha": 0.9}
    assert (recipe.schedule.optimizer, recipe.schedule.lr_schedule) == ("adam", "constant")
    assert distill_args(["--top_k=5", "--top_p=0.9", "--epochs=1"]) == [
        "--config=lm",
        "--sampling_top_k=5",
        "--sampling_top_p=0.9",
        "--epochs=1",
        "--overwrite",
    ]
