"""Per-token divergences against NumPy references written from the papers' equations."""

import numpy as np
import pytest

from tfkd.lm import objective

RNG = np.random.default_rng(0)
TEACHER = RNG.normal(0, 2, (2, 3, 7)).astype("float32")
STUDENT = RNG.normal(0, 2, (2, 3, 7)).astype("float32")


def softmax(z, temperature=1.0):
    z = z / temperature
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def kl(p, q):
    return (p * (np.log(p) - np.log(q))).sum(-1)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_forward_and_reverse_kl(temperature):
    p_t, p_s = softmax(TEACHER, temperature), softmax(STUDENT, temperature)
    np.testing.assert_allclose(
        objective.forward_kl(TEACHER, STUDENT, temperature),
        temperature**2 * kl(p_t, p_s),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        objective.reverse_kl(TEACHER, STUDENT, temperature),
        temperature**2 * kl(p_s, p_t),
        rtol=1e-5,
    )
    assert objective.forward_kl(TEACHER, STUDENT, temperature).shape == (2, 3)


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9])
def test_generalized_jsd(beta):
    p_t, p_s = softmax(TEACHER), softmax(STUDENT)
    mixture = beta * p_t + (1 - beta) * p_s
    expected = beta * kl(p_t, mixture) + (1 - beta) * kl(p_s, mixture)
    np.testing.assert_allclose(
        objective.generalized_jsd(TEACHER, STUDENT, 1.0, beta), expected, rtol=1e-5
    )


def test_jsd_ends_are_forward_and_reverse_kl_exactly():
    np.testing.assert_array_equal(
        objective.generalized_jsd(TEACHER, STUDENT, 1.5, 0.0),
        objective.forward_kl(TEACHER, STUDENT, 1.5),
    )
    np.testing.assert_array_equal(
        objective.generalized_jsd(TEACHER, STUDENT, 1.5, 1.0),
        objective.reverse_kl(TEACHER, STUDENT, 1.5),
    )
    # Near the ends the formula itself tends to 0, which is why the ends are special cases.
    assert float(np.max(objective.generalized_jsd(TEACHER, STUDENT, 1.0, 1e-6))) < 1e-4
    with pytest.raises(ValueError, match="jsd_beta must be in"):
        objective.generalized_jsd(TEACHER, STUDENT, 1.0, 1.5)


def _top_k(logits, k, temperature=1.0):
    log_p = np.log(softmax(logits, temperature))
    ids = np.argsort(-log_p, axis=-1)[..., :k]
    return np.take_along_axis(log_p, ids, -1), ids


@pytest.mark.parametrize("k", [1, 3, 6])
def test_sparse_topk_kl_with_tail_bucket(k):
    log_p_t, ids = _top_k(TEACHER, k, 2.0)
    p_s = softmax(STUDENT, 2.0)
    p_t_top = np.exp(log_p_t)
    p_s_top = np.take_along_axis(p_s, ids, -1)
    tail_t, tail_s = 1 - p_t_top.sum(-1), 1 - p_s_top.sum(-1)
    head = (p_t_top * (log_p_t - np.log(p_s_top))).sum(-1)
    expected = 4.0 * (head + tail_t * (np.log(tail_t) - np.log(tail_s)))
    np.testing.assert_allclose(
        objective.sparse_topk_kl(log_p_t, ids, STUDENT, 2.0), expected, rtol=1e-4
    )
    np.testing.assert_allclose(
        objective.sparse_topk_kl(log_p_t, ids, STUDENT, 2.0, tail_t), expected, rtol=1e-4
    )
    np.testing.assert_allclose(
        objective.sparse_topk_kl(log_p_t, ids, STUDENT, 2.0, False), 4.0 * head, rtol=1e-4
    )


def test_sparse_topk_kl_with_every_token_is_forward_kl():
    log_p_t, ids = _top_k(TEACHER, 7, 2.0)
    np.testing.assert_allclose(
        objective.sparse_topk_kl(log_p_t, ids, STUDENT, 2.0),
        objective.forward_kl(TEACHER, STUDENT, 2.0),
        rtol=1e-4,
        atol=1e-6,
    )
    # Stored as float16, with the tail mass of the full-precision probabilities.
    np.testing.assert_allclose(
        objective.sparse_topk_kl(
            log_p_t.astype("float16"), ids, STUDENT, 2.0, np.zeros((2, 3), "float32")
        ),
        objective.forward_kl(TEACHER, STUDENT, 2.0),
        rtol=2e-3,
        atol=2e-3,
    )


def test_masked_global_mean_is_sum_over_valid_tokens_over_their_count():
    values = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], "float32")
    mask = np.array([[1, 1, 0], [0, 1, 0]], "float32")
    assert float(objective.masked_global_mean(values, mask)) == pytest.approx((1 + 2 + 5) / 3)
    assert float(objective.masked_global_mean(values, np.zeros_like(mask))) == 0.0


def test_unknown_divergence_is_refused():
    with pytest.raises(ValueError, match="--divergence must be one of forward_kl, reverse_kl, jsd"):
        objective.divergence("tvd", TEACHER, STUDENT)
