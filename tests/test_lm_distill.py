"""Token-level causal-LM distillation: the objective against NumPy, masks, replicas."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny_lms import TIME, batch, kl, softmax, tiny_lm

from tfkd.lm import CausalLMDistiller, objective
from tfkd.lm.sampling import Sampling
from tfkd.models import gpt as lm_models


def _numpy_objective(teacher, student, x, y, weight, divergence, alpha, temperature=1.0, beta=0.5):
    p_t = softmax(teacher(x), temperature)
    p_s = softmax(student(x), temperature)
    if divergence == "forward_kl":
        per_token = kl(p_t, p_s)
    elif divergence == "reverse_kl":
        per_token = kl(p_s, p_t)
    else:
        mixture = beta * p_t + (1 - beta) * p_s
        per_token = beta * kl(p_t, mixture) + (1 - beta) * kl(p_s, mixture)
    per_token *= temperature**2
    mask = weight * (y != -100)
    labels = np.where(y == -100, 0, y)
    nll = -np.log(np.take_along_axis(softmax(student(x)), labels[..., None], -1)[..., 0])
    divergence_mean = (per_token * mask).sum() / mask.sum()
    nll_mean = (nll * mask).sum() / mask.sum()
    return alpha * divergence_mean + (1 - alpha) * nll_mean, nll_mean, divergence_mean


@pytest.mark.parametrize(
    "divergence, alpha, temperature",
    [("forward_kl", 0.9, 1.0), ("reverse_kl", 1.0, 2.0), ("jsd", 0.5, 1.0)],
)
def test_evaluation_terms_match_numpy(divergence, alpha, temperature):
    teacher, student = tiny_lm(1, hidden=32), tiny_lm(2)
    x, y, weight = batch()
    distiller = CausalLMDistiller(
        student, teacher, divergence=divergence, alpha=alpha, temperature=temperature
    )
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    logs = distiller.evaluate(x, y, sample_weight=weight, batch_size=4, verbose=0, return_dict=True)
    loss, nll, divergence_mean = _numpy_objective(
        teacher, student, x, y, weight, divergence, alpha, temperature
    )
    assert logs["loss"] == pytest.approx(loss, rel=1e-4)
    assert logs["student_loss"] == pytest.approx(nll, rel=1e-4)
    assert logs["distillation_loss"] == pytest.approx(divergence_mean, rel=1e-4)
    assert logs["perplexity"] == pytest.approx(np.exp(nll), rel=1e-4)


def test_padding_prompt_and_ignored_labels_do_not_count():
    teacher, student = tiny_lm(1), tiny_lm(2)
    x, y, weight = batch()
    changed = {name: value.copy() for name, value in x.items()}
    changed_y = y.copy()
    # Targets under a zero weight or label -100: changing them changes nothing.
    changed_y[1, :2] = (changed_y[1, :2] + 1) % 20 + 3
    changed_y[2, 3:] = 5
    distiller = CausalLMDistiller(student, teacher, alpha=0.5)
    distiller.compile(optimizer="sgd")
    first = distiller.evaluate(x, y, sample_weight=weight, verbose=0, return_dict=True)
    second = distiller.evaluate(
        changed, changed_y, sample_weight=weight, verbose=0, return_dict=True
    )
    assert first["loss"] == pytest.approx(second["loss"], rel=1e-6)


def _one_step(strategy, weights):
    x, y, weight = batch()
    with strategy.scope():
        teacher, student = tiny_lm(1), tiny_lm(2)
        distiller = CausalLMDistiller(student, teacher, divergence="jsd", alpha=0.7)
        distiller.compile(optimizer=keras.optimizers.SGD(1.0))
    if weights is not None:
        student.set_weights(weights)
    start = student.get_weights()
    dataset = tf.data.Dataset.from_tensor_slices((x, y, weight)).batch(4)
    history = distiller.fit(dataset, epochs=1, shuffle=False, verbose=0)
    return start, student.get_weights(), history.history


def test_two_replicas_with_different_valid_token_counts_take_the_one_replica_step(mirrored):
    x, y, weight = batch()
    # Replica 0 gets rows 0-1 (13 valid targets), replica 1 rows 2-3 (5).
    assert weight[:2].sum() != weight[2:].sum()
    start, one, history_one = _one_step(tf.distribute.get_strategy(), None)
    _, two, history_two = _one_step(mirrored, start)
    moved = max(np.abs(a - b).max() for a, b in zip(start, one))
    difference = max(np.abs(a - b).max() for a, b in zip(one, two))
    # The step moves weights by far more than the difference a per-replica count would make.
    assert moved > 1e-2 and difference < 1e-5 * moved
    for name in ("loss", "student_loss", "distillation_loss"):
        assert history_two[name][0] == pytest.approx(history_one[name][0], rel=1e-5)


def test_bad_arguments_are_refused_by_name():
    teacher, student = tiny_lm(1), tiny_lm(2)
    other = lm_models.gpt2_causal_lm(30, 1, 16, 2, TIME, name="wide_vocabulary")
    with pytest.raises(
        ValueError,
        match="must share the tokenizer: student 'lm_2_16' has a "
        "vocabulary of 24 tokens, teacher 'wide_vocabulary' 30",
    ):
        CausalLMDistiller(student, other)
    with pytest.raises(ValueError, match="--divergence must be one of"):
        CausalLMDistiller(student, teacher, divergence="tv")
    with pytest.raises(ValueError, match="--max_new_tokens must be a positive integer, got 0"):
        CausalLMDistiller(
            student, teacher, on_policy_fraction=0.5, sampling=Sampling(max_new_tokens=0)
        )
    with pytest.raises(ValueError, match="--on_policy_fraction must be in"):
        CausalLMDistiller(student, teacher, on_policy_fraction=1.5)
    with pytest.raises(ValueError, match="--on_policy_fraction > 0 needs a live teacher"):
        CausalLMDistiller(student, None, on_policy_fraction=0.5)
    with pytest.raises(ValueError, match="--top_p must be in"):
        CausalLMDistiller(student, teacher, sampling=Sampling(top_p=0.0))


@pytest.mark.parametrize(
    "field, message",
    [
        ({"max_new_tokens": -1}, r"--max_new_tokens must be an integer >= 0 .*, got -1"),
        ({"temperature": 0.0}, r"--sampling_temperature must be > 0, got 0.0"),
        ({"top_k": 1.5}, r"--top_k must be an integer >= 0 .*, got 1.5"),
        ({"top_p": 1.5}, r"--top_p must be in \(0, 1\], got 1.5"),
    ],
)
def test_sampling_refuses_bad_values_naming_the_field(field, message):
    with pytest.raises(ValueError, match=message):
        Sampling(**field)


def test_masked_global_mean_is_sum_over_valid_tokens_over_their_count():
    values = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "float32")
    mask = np.array([[1, 1, 0], [0, 1, 0]], "float32")
    assert float(objective.masked_global_mean(values, mask)) == pytest.approx((1 + 2 + 5) / 3)
    assert float(objective.masked_global_mean(values, np.zeros_like(mask))) == 0.0
