"""Partial-distillation targets (tfkd.targets) against NumPy references written from the paper."""

import numpy as np
import pytest
import tensorflow as tf
from partial_reference import (
    ref_kd_pt,
    ref_kd_rel,
    ref_kd_sim,
    ref_kd_topk,
    ref_label_smoothing,
    softmax,
)

from tfkd import targets

K = 6


def _batch(n=16, classes=K, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    probs = softmax(scale * rng.normal(size=(n, classes))).astype("float32")
    labels = rng.integers(0, classes, size=n).astype("int64")
    weights = rng.normal(size=(classes, 5)).astype("float32")
    return probs, labels, weights


SUPERCLASS_OF = np.array([0, 0, 1, 1, 1, 2])


def _all_targets(probs, labels, weights):
    return {
        "label_smoothing": targets.label_smoothing(labels, K, 0.2),
        "kd_pt": targets.kd_pt(probs, labels),
        "kd_sim": targets.kd_sim(weights, labels, 2.0, 0.1),
        "kd_pt_sim": targets.kd_pt_sim(probs, weights, labels, 0.3, 2.0, 0.1),
        "kd_topk": targets.kd_topk(probs, 2),
        "kd_rel": targets.kd_rel(labels, SUPERCLASS_OF, 0.6, 0.1, 0.01),
    }


def test_every_target_matches_its_numpy_reference():
    probs, labels, weights = _batch()
    got = {name: np.asarray(value) for name, value in _all_targets(probs, labels, weights).items()}
    expected = {
        "label_smoothing": ref_label_smoothing(labels, K, 0.2),
        "kd_pt": ref_kd_pt(probs, labels),
        "kd_sim": ref_kd_sim(weights, labels, 2.0, 0.1),
        "kd_pt_sim": 0.3 * ref_kd_pt(probs, labels) + 0.7 * ref_kd_sim(weights, labels, 2.0, 0.1),
        "kd_topk": ref_kd_topk(probs, 2),
        "kd_rel": ref_kd_rel(labels, SUPERCLASS_OF, 0.6, 0.1, 0.01),
    }
    for name, value in expected.items():
        assert got[name].shape == (len(labels), K), name
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rows_are_probabilities(seed):
    probs, labels, weights = _batch(n=32, seed=seed, scale=10.0)
    for name, value in _all_targets(probs, labels, weights).items():
        value = np.asarray(value)
        assert (value >= 0).all(), name
        np.testing.assert_allclose(value.sum(-1), 1.0, atol=1e-5, err_msg=name)


def test_targets_run_inside_a_graph_with_unknown_batch():
    probs, labels, weights = _batch()

    @tf.function(input_signature=[tf.TensorSpec([None, K]), tf.TensorSpec([None], tf.int64)])
    def graph(p, y):
        return _all_targets(p, y, weights)

    eager = _all_targets(probs, labels, weights)
    for name, value in graph(probs, labels).items():
        np.testing.assert_allclose(value, eager[name], rtol=1e-6, err_msg=name)


def test_topk_with_k_equal_k_is_the_teacher_and_k_one_keeps_only_the_top_mass():
    probs, _, _ = _batch(scale=2.0)
    np.testing.assert_allclose(targets.kd_topk(probs, K), probs, atol=1e-7)
    top1 = np.asarray(targets.kd_topk(probs, 1))
    top = probs.argmax(-1)
    rows = np.arange(len(probs))
    np.testing.assert_allclose(top1[rows, top], probs[rows, top], rtol=1e-6)
    others = np.where(np.eye(K, dtype=bool)[top], np.nan, top1)
    expected = (1.0 - probs[rows, top]) / (K - 1)
    np.testing.assert_allclose(np.nanmin(others, 1), expected, rtol=1e-5)
    np.testing.assert_allclose(np.nanmax(others, 1), expected, rtol=1e-5)


def test_topk_keeps_exactly_k_entries_when_probabilities_tie():
    probs = np.array([[0.25, 0.25, 0.25, 0.25, 0.0, 0.0]], "float32")
    value = np.asarray(targets.kd_topk(probs, 2))
    np.testing.assert_allclose(value.sum(), 1.0, rtol=1e-6)
    assert np.count_nonzero(np.isclose(value, 0.25)) == 2
    np.testing.assert_allclose(np.sort(value[0])[:4], 0.125, rtol=1e-6)


def test_kd_pt_puts_exactly_the_teacher_p_t_on_the_true_class():
    probs, labels, _ = _batch()
    value = np.asarray(targets.kd_pt(probs, labels))
    rows = np.arange(len(labels))
    np.testing.assert_array_equal(value[rows, labels], probs[rows, labels])


def test_kd_sim_is_the_same_for_every_example_of_a_class():
    _, _, weights = _batch()
    labels = np.array([3, 1, 3, 3, 1, 0])
    value = np.asarray(targets.kd_sim(weights, labels, 1.0, 0.5))
    np.testing.assert_array_equal(value[0], value[2])
    np.testing.assert_array_equal(value[0], value[3])
    np.testing.assert_array_equal(value[1], value[4])
    assert not np.allclose(value[0], value[1])
    assert (value.argmax(-1) == labels).all()  # cosine 1 with itself is the largest


def test_kd_sim_orders_classes_by_cosine_similarity():
    weights = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]], "float32")
    row = np.asarray(targets.kd_sim(weights, [0], 1.0, 0.2))[0]
    assert row[0] > row[1] > row[2] > row[3]
    # scaling a class's weight row does not change its target (only directions count)
    np.testing.assert_allclose(
        targets.kd_sim(weights * [[3.0], [0.5], [2.0], [1.0]], [0], 1.0, 0.2)[0], row, rtol=1e-6
    )


def test_label_smoothing_with_zero_epsilon_is_one_hot():
    labels = np.array([0, 5, 2])
    np.testing.assert_array_equal(targets.label_smoothing(labels, K, 0.0), np.eye(K)[labels])


def test_kd_rel_uses_the_super_classes():
    value = np.asarray(targets.kd_rel([2], SUPERCLASS_OF, 0.5, 0.2, 0.0))[0]
    np.testing.assert_allclose(value, [0, 0, 0.5 / 0.9, 0.2 / 0.9, 0.2 / 0.9, 0], rtol=1e-6)


@pytest.mark.parametrize("k", [0, K + 1, 2.5, -1])
def test_topk_outside_range_is_refused(k):
    probs, _, _ = _batch()
    with pytest.raises(ValueError, match=rf"k \(top-k\) must be an integer in \[1, {K}\]"):
        targets.kd_topk(probs, k)


def test_missing_superclass_map_is_refused():
    with pytest.raises(ValueError, match="super-class map"):
        targets.kd_rel([0, 1], None, 0.7, 0.1, 0.01)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda p, y, w: targets.kd_pt(p, y[:-1]), "disagree on the batch size"),
        (lambda p, y, w: targets.kd_pt(p[0], y), r"teacher_probs must have shape \[batch, "),
        (lambda p, y, w: targets.kd_pt(p, y[:, None, None]), "labels must have shape"),
        (
            lambda p, y, w: targets.kd_pt_sim(p, w[:-1], y, 0.5, 1.0, 0.1),
            "teacher_probs has 6 classes but classifier_weights has 5",
        ),
        (lambda p, y, w: targets.kd_sim(w[0], y, 1.0, 0.1), "classifier_weights must have shape"),
        (
            lambda p, y, w: targets.kd_rel(y, SUPERCLASS_OF[None], 0.7, 0.1, 0.0),
            "superclass_of must have shape",
        ),
    ],
)
def test_mismatched_shapes_are_refused(call, message):
    probs, labels, weights = _batch()
    with pytest.raises(ValueError, match=message):
        call(probs, labels, weights)


@pytest.mark.parametrize(
    "call,message",
    [
        (
            lambda: targets.label_smoothing([0], K, 1.5),
            r"epsilon \(label smoothing\) must be in \[0, 1\], got 1.5",
        ),
        (
            lambda: targets.label_smoothing([0], 1, 0.1),
            "num_classes must be an integer >= 2, got 1",
        ),
        (
            lambda: targets.kd_sim(np.eye(K), [0], 0.0, 0.1),
            r"beta \(KD-sim similarity power\) must be > 0",
        ),
        (lambda: targets.kd_sim(np.eye(K), [0], 1.0, 0.0), r"temperature \(KD-sim\) must be > 0"),
        (
            lambda: targets.kd_pt_sim(np.eye(K), np.eye(K), [0], 1.5, 1.0, 0.1),
            r"gamma \(KD-pt\+sim mixing weight\) must be in \[0, 1\], got 1.5",
        ),
        (
            lambda: targets.kd_rel([0], SUPERCLASS_OF, 0.0, 0.1, 0.1),
            "kd_rel masses .* got p_gt=0.0,",
        ),
        (
            lambda: targets.kd_rel([0], SUPERCLASS_OF, 0.7, -0.1, 0.1),
            "kd_rel masses .* p_same=-0.1,",
        ),
    ],
)
def test_bad_hyperparameters_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_mistyped_target_option_is_refused_by_name():
    from tfkd.targets import build_target

    with pytest.raises(ValueError, match="teacher target 'kd_topk' takes no option top_k"):
        build_target("kd_topk", temperature=2.0, top_k=3)
    # The distiller's temperature reaches only the targets that take one.
    assert build_target("kd_rel", temperature=2.0, superclass_of=[0, 0, 1, 1]).p_gt == 0.7
