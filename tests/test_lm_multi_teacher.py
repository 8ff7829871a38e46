"""Several causal-LM teachers per token (AVER, EBKD, CA-MKD), live and from stored top-k, against
NumPy references written from the weightings' equations; a language-model run with --teachers."""

import json

import keras
import numpy as np
import pytest
from tiny_lms import TIME, VOCABULARY, batch, kl, softmax, tiny_lm

from tfkd import experiment
from tfkd.data import language_modeling as lm_data
from tfkd.data.language_modeling import TokenSplit
from tfkd.experiment import RunConfig
from tfkd.lm.multi_teacher_distiller import (
    MultiTeacherCausalLMDistiller,
    run_distiller,
    stacked_store_dataset,
    stored_token_weights,
    token_weights,
)
from tfkd.lm.store import TopKStore
from tfkd.models import gpt as lm_models
from tfkd.settings import ConfigError

METHODS = ("aver", "ebkd", "ca_mkd")
K_STORED = 5


def numpy_weights(probs, labels, method):
    """probs [K, ..., V], labels [...] -> weights [..., K], from the weightings' equations."""
    count = probs.shape[0]
    if method == "aver":
        return np.full(probs.shape[1:-1] + (count,), 1.0 / count)
    if method == "ebkd":  # w_k = (1 - H_k / sum_j H_j) / (K - 1)
        entropy = -(probs * np.log(probs)).sum(-1)
        weights = (1 - entropy / entropy.sum(0)) / (count - 1)
    else:  # CA-MKD: w_k = (1 - softmax_k(L)) / (K - 1), L_k = -log p_k(y)
        losses = -np.log(np.take_along_axis(probs, labels[None, ..., None], -1)[..., 0])
        exp = np.exp(losses - losses.max(0))
        weights = (1 - exp / exp.sum(0)) / (count - 1)
    return np.moveaxis(weights, 0, -1)


def numpy_objective(per_teacher, weights, student_probs, y, weight, alpha):
    """alpha * (sum over valid tokens of sum_k w_k D_k) / valid tokens + (1 - alpha) * CE."""
    mask = weight * (y != -100)
    labels = np.where(y == -100, 0, y)
    divergence = (weights * per_teacher).sum(-1)
    nll = -np.log(np.take_along_axis(student_probs, labels[..., None], -1)[..., 0])
    divergence_mean = (divergence * mask).sum() / mask.sum()
    nll_mean = (nll * mask).sum() / mask.sum()
    return alpha * divergence_mean + (1 - alpha) * nll_mean, divergence_mean


def teachers():
    return [tiny_lm(1), tiny_lm(3, hidden=32)]


def _labels(y):
    return np.where(y == -100, 0, y)


@pytest.mark.parametrize("method", METHODS)
def test_live_token_weights_match_numpy(method):
    x, y, _ = batch()
    logits = np.stack([np.asarray(teacher(x)) for teacher in teachers()])
    weights = np.asarray(token_weights(logits, _labels(y), method))
    assert weights.shape == (4, TIME, 2)
    expected = numpy_weights(softmax(logits), _labels(y), method)
    np.testing.assert_allclose(weights, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    "method, alpha, temperature", [("aver", 0.9, 1.0), ("ebkd", 1.0, 2.0), ("ca_mkd", 0.5, 1.0)]
)
def test_live_objective_with_padding_matches_numpy(method, alpha, temperature):
    models, student = teachers(), tiny_lm(2)
    x, y, weight = batch()  # padding, a prompt and a -100 label
    distiller = MultiTeacherCausalLMDistiller(
        student, models, weighting=method, alpha=alpha, temperature=temperature
    )
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    logs = distiller.evaluate(x, y, sample_weight=weight, batch_size=4, verbose=0, return_dict=True)
    teacher_logits = np.stack([np.asarray(model(x)) for model in models])
    student_logits = np.asarray(student(x))
    per_teacher = np.stack(
        [
            temperature**2 * kl(softmax(z, temperature), softmax(student_logits, temperature))
            for z in teacher_logits
        ],
        axis=-1,
    )
    weights = numpy_weights(softmax(teacher_logits), _labels(y), method)
    loss, divergence = numpy_objective(
        per_teacher, weights, softmax(student_logits), y, weight, alpha
    )
    assert logs["loss"] == pytest.approx(loss, rel=1e-4)
    assert logs["distillation_loss"] == pytest.approx(divergence, rel=1e-4)


def test_a_training_step_differentiates_the_numpy_objective():
    keras.utils.set_random_seed(0)
    models, student = teachers(), tiny_lm(2)
    x, y, weight = batch()
    teacher_logits = np.stack([np.asarray(model(x)) for model in models])
    student_logits = np.asarray(student(x))
    per_teacher = np.stack(
        [kl(softmax(z), softmax(student_logits)) for z in teacher_logits], axis=-1
    )
    weights = numpy_weights(softmax(teacher_logits), _labels(y), "ca_mkd")
    loss, _ = numpy_objective(per_teacher, weights, softmax(student_logits), y, weight, 0.7)
    distiller = MultiTeacherCausalLMDistiller(student, models, weighting="ca_mkd", alpha=0.7)
    distiller.compile(optimizer=keras.optimizers.SGD(0.5))
    before = student.get_weights()
    history = distiller.fit(x, y, sample_weight=weight, batch_size=4, epochs=1, verbose=0)
    # The step's loss is the objective at the weights it starts from, and it moves the student
    # only: the teachers are frozen.
    assert history.history["loss"][0] == pytest.approx(loss, rel=1e-4)
    assert any(not np.allclose(a, b) for a, b in zip(before, student.get_weights()))
    assert not distiller.teacher.trainable_weights


def _split(rows=6, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(3, VOCABULARY, (rows, TIME + 1)).astype("int32")
    padding = np.ones_like(tokens)
    padding[-1, 5:] = 0
    tokens[-1, 5:] = 0
    loss_mask = padding.copy()
    loss_mask[0, :3] = 0  # a prompt
    return TokenSplit(tokens, padding, loss_mask)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """The two teachers, a split, and one store per teacher with k = 5 and with k = V."""
    root, models, split = str(tmp_path_factory.mktemp("stores")), teachers(), _split()
    stores = {
        k: [TopKStore.open_or_build(root, model, split, k=k) for model in models]
        for k in (K_STORED, VOCABULARY)
    }
    return models, split, stores


def _completed_probs(store_list, vocabulary):
    """NumPy: each store's distribution, the tail spread evenly over the tokens not stored and
    renormalised -> [K, sequences, time, V]."""
    result = []
    for store in store_list:
        ids = np.asarray(store.arrays["teacher_topk_ids"])
        log_probs = np.asarray(store.arrays["teacher_topk_log_probs"], "float64")
        tail = np.maximum(np.asarray(store.arrays["teacher_tail_mass"], "float64"), 1e-12)
        k = ids.shape[-1]
        probs = np.repeat((tail / max(vocabulary - k, 1))[..., None], vocabulary, -1)
        np.put_along_axis(probs, ids, np.exp(log_probs), -1)
        result.append(probs / probs.sum(-1, keepdims=True))
    return np.stack(result)


@pytest.mark.parametrize("method", ["ebkd", "ca_mkd"])
def test_stored_token_weights_match_numpy_on_the_completed_distribution(method, stored):
    _, split, stores = stored
    _, y, _ = split.shifted()
    arrays = {
        name: np.stack([np.asarray(store.arrays[name]) for store in stores[K_STORED]])
        for name in ("teacher_topk_ids", "teacher_topk_log_probs", "teacher_tail_mass")
    }
    weights = np.asarray(stored_token_weights(arrays, y, method, VOCABULARY))
    expected = numpy_weights(_completed_probs(stores[K_STORED], VOCABULARY), y, method)
    # atol: float32's cancellation in 1 - H_k / sum_j H_j when one teacher is far sharper.
    np.testing.assert_allclose(weights, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_stored_objective_matches_numpy(method, stored):
    _, split, stores = stored
    x, y, weight = split.shifted()
    student = tiny_lm(2)
    distiller = MultiTeacherCausalLMDistiller(student, None, weighting=method, alpha=0.8)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    # One batch: `loss` is the mean over batches, the other terms are token-weighted.
    dataset = stacked_store_dataset(stores[K_STORED], split, batch_size=len(y))
    logs = distiller.evaluate(dataset, verbose=0, return_dict=True)
    # The rows in an epoch order of their own, as a resumable run reads them.
    ordered = stacked_store_dataset(
        stores[K_STORED], split, batch_size=4, orders=np.arange(len(y))[None, ::-1]
    )
    reordered = distiller.evaluate(ordered, verbose=0, return_dict=True)
    assert reordered["distillation_loss"] == pytest.approx(logs["distillation_loss"], rel=1e-5)
    student_probs = softmax(np.asarray(student(x)))
    per_teacher = []
    for store in stores[K_STORED]:  # sparse top-k KL with the stored tail bucket, T = 1
        ids = np.asarray(store.arrays["teacher_topk_ids"])
        log_p = np.asarray(store.arrays["teacher_topk_log_probs"], "float64")
        tail = np.asarray(store.arrays["teacher_tail_mass"], "float64")
        log_q = np.log(np.take_along_axis(student_probs, ids, -1))
        student_tail = 1 - np.exp(log_q).sum(-1)
        per_teacher.append(
            (np.exp(log_p) * (log_p - log_q)).sum(-1) + tail * np.log(tail / student_tail)
        )
    weights = numpy_weights(_completed_probs(stores[K_STORED], VOCABULARY), y, method)
    loss, divergence = numpy_objective(
        np.stack(per_teacher, -1), weights, student_probs, y, weight, 0.8
    )
    assert logs["distillation_loss"] == pytest.approx(divergence, rel=1e-4)
    assert logs["loss"] == pytest.approx(loss, rel=1e-4)


@pytest.mark.parametrize("method", ["ebkd", "ca_mkd"])
def test_stored_with_every_token_equals_live(method, stored):
    models, split, stores = stored
    x, y, weight = split.shifted()
    arrays = {
        name: np.stack([np.asarray(store.arrays[name]) for store in stores[VOCABULARY]])
        for name in ("teacher_topk_ids", "teacher_topk_log_probs", "teacher_tail_mass")
    }
    live_logits = np.stack([np.asarray(model(x)) for model in models])
    np.testing.assert_allclose(
        np.asarray(stored_token_weights(arrays, y, method, VOCABULARY)),
        np.asarray(token_weights(live_logits, y, method)),
        atol=2e-3,  # the store's float16 log-probabilities
    )
    logs = {}
    for source in ("live", "stored"):
        distiller = MultiTeacherCausalLMDistiller(
            tiny_lm(2), models if source == "live" else None, weighting=method, alpha=0.6
        )
        distiller.compile(optimizer=keras.optimizers.SGD(0.1))
        if source == "live":
            logs[source] = distiller.evaluate(
                x, y, sample_weight=weight, batch_size=len(y), verbose=0, return_dict=True
            )
        else:
            dataset = stacked_store_dataset(stores[VOCABULARY], split, batch_size=len(y))
            logs[source] = distiller.evaluate(dataset, verbose=0, return_dict=True)
    assert logs["stored"]["loss"] == pytest.approx(logs["live"]["loss"], rel=2e-3)
    assert logs["stored"]["distillation_loss"] == pytest.approx(
        logs["live"]["distillation_loss"], rel=2e-3
    )


def test_teachers_with_different_vocabularies_are_refused():
    other = lm_models.gpt2_causal_lm(VOCABULARY + 6, 1, 16, 2, TIME, seed=5, name="wide")
    with pytest.raises(
        ValueError,
        match=r"teachers must share the tokenizer: teacher 'lm_1_16' has a vocabulary of "
        r"24 tokens, teacher 'wide' 30",
    ):
        MultiTeacherCausalLMDistiller(tiny_lm(2), [tiny_lm(1), other], weighting="aver")


def test_bad_methods_are_refused():
    with pytest.raises(ValueError, match=r"--method must be one of aver, ebkd, ca_mkd, got 'kd'"):
        MultiTeacherCausalLMDistiller(tiny_lm(2), teachers(), weighting="kd")
    with pytest.raises(ValueError, match=r"--method=ebkd needs at least 2 --teachers; got 1"):
        MultiTeacherCausalLMDistiller(tiny_lm(2), [tiny_lm(1)], weighting="ebkd")
    with pytest.raises(ValueError, match=r"--on_policy_fraction must be 0"):
        MultiTeacherCausalLMDistiller(
            tiny_lm(2), teachers(), weighting="ca_mkd", on_policy_fraction=0.5
        )


def test_a_run_reads_lambda1_as_the_multi_teacher_methods_weight():
    x, y, weight = batch()
    distiller = run_distiller(
        tiny_lm(2), teachers(), "ebkd", {"temperature": 2.0, "lambda1": 3.0, "extra": None}
    )
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    logs = distiller.evaluate(x, y, sample_weight=weight, batch_size=4, verbose=0, return_dict=True)
    # (CE + lambda1 * sum_k w_k D_k) / (1 + lambda1), at the method's temperature.
    assert distiller.temperature == 2.0
    assert logs["loss"] == pytest.approx(
        (logs["student_loss"] + 3.0 * logs["distillation_loss"]) / 4.0, rel=1e-5
    )


def _run_files(folder):
    """A corpus of 40 short documents, two teachers and a student saved as .keras files."""
    corpus = folder / "corpus.txt"
    corpus.write_text(
        "\n\n".join(f"def f{i}(x): return x + {i}  # adds {i} to x" for i in range(40))
    )
    size = lm_data.ByteTokenizer.vocabulary_size
    for name, seed, hidden in (("a", 1, 32), ("b", 3, 24), ("student", 2, 16)):
        model = lm_models.gpt2_causal_lm(size, 1, hidden, 2, 16, seed=seed, name=name)
        model.save(str(folder / f"{name}.keras"))


def _run_flags(folder, *extra):
    return [
        f"--dataset=lm:{folder}/corpus.txt",
        "--sequence_length=16",
        f"--teachers={folder}/a.keras,{folder}/b.keras",
        f"--student={folder}/student.keras",
        "--method=ca_mkd",
        "--temperature=1",
        "--lambda1=3",
        "--epochs=1",
        "--batch_size=8",
        "--teacher_cache=disk",
        "--cache_topk=8",
        "--samples=0",
        "--max_new_tokens=4",
        "--verbose=0",
        f"--cache_dir={folder}/cache",
        f"--output_dir={folder}/run",
        *extra,
    ]


def test_a_language_model_run_distils_from_several_stored_teachers_and_exports(tmp_path):
    keras.utils.set_random_seed(0)
    _run_files(tmp_path)
    results = experiment.run(
        RunConfig.from_flags(_run_flags(tmp_path, "--export=keras,savedmodel"))
    )
    folder = tmp_path / "run"
    assert [entry["arch"] for entry in results["teachers"]] == [
        f"{tmp_path}/a.keras",
        f"{tmp_path}/b.keras",
    ]
    assert results["teacher"]["validation"]["perplexity"] == min(
        entry["validation"]["perplexity"] for entry in results["teachers"]
    )
    assert len(results["store"]["directory"]) == 2
    assert results["store"]["bytes_per_token"] == 8 * 4 + 8 * 2 + 4
    report = json.loads((folder / "export_report.json").read_text())
    assert report["formats"]["savedmodel"]["agreement"] == 1.0
    assert report["formats"]["savedmodel"]["max_abs_logit_diff"] < 1e-4
    assert report["formats"]["savedmodel"]["generate"]["token_agreement"] == 1.0
    assert results["exports"]["report"] == "export_report.json"


@pytest.mark.parametrize(
    "extra, match",
    [
        (("--on_policy_fraction=0.5", "--teacher_cache=none"), r"ca_mkd weighs teachers by"),
        (("--lambda2=3",), r"--lambda2 does not apply to ca_mkd on a causal LM"),
        (("--export=keras,tflite_int8",), r"tflite_int8 \(a causal LM exports to keras, "),
        (("--method=fitnet_mkd",), r"or from several --teachers by aver, ebkd, ca_mkd"),
    ],
)
def test_a_language_model_run_refuses_what_several_teachers_cannot_do(tmp_path, extra, match):
    with pytest.raises(ConfigError, match=match):
        RunConfig.from_flags(_run_flags(tmp_path, *extra))
