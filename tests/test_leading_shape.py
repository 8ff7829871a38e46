"""Every pure loss, target and multi-teacher weighting maps [..., K] to [...]: on [batch, time, K]
it equals the same function on the flattened [batch * time, K], reshaped back (a property test
over shapes and temperatures)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfkd import losses, targets
from tfkd import teacher_weighting as multi_teacher
from tfkd.targets import hand_crafted as partial_targets

SETTINGS = settings(max_examples=10, deadline=None, derandomize=True)
SHAPES = st.tuples(st.integers(1, 3), st.integers(2, 4), st.integers(2, 6))
TEMPERATURES = st.floats(0.5, 8.0)
SEEDS = st.integers(0, 2**31 - 1)


def _case(shape, seed):
    """(labels [B, T], student logits, teacher logits [B, T, K], teacher probabilities)."""
    batch, time, classes = shape
    rng = np.random.default_rng(seed)
    student, teacher = (rng.normal(size=(2, batch, time, classes)) * 3).astype("float32")
    labels = rng.integers(0, classes, (batch, time))
    probs = np.exp(teacher - teacher.max(-1, keepdims=True))
    return labels, student, teacher, (probs / probs.sum(-1, keepdims=True)).astype("float32")


def _flat(array):
    array = np.asarray(array)
    return array.reshape((-1,) + array.shape[2:])


def _same(on_sequences, on_rows, shape):
    """`on_sequences` [B, T, ...] equals `on_rows` [B * T, ...] reshaped back."""
    on_sequences, on_rows = np.asarray(on_sequences), np.asarray(on_rows)
    assert on_sequences.shape[:2] == shape[:2]
    np.testing.assert_allclose(
        on_sequences, on_rows.reshape(on_sequences.shape), rtol=1e-5, atol=1e-6
    )


def _superclasses(classes):
    return np.arange(classes) // 2


def _classifier_weights(classes, seed):
    return np.random.default_rng(seed + 1).normal(size=(classes, 3)).astype("float32")


# name -> function(labels, student, teacher, teacher_probs, temperature, seed) -> [..., ...].
LOSSES = {
    "cross_entropy": lambda y, s, t, p, T, seed: losses.cross_entropy(y, s),
    "soft_cross_entropy": lambda y, s, t, p, T, seed: losses.soft_cross_entropy(p, s, T),
    "kl_divergence": lambda y, s, t, p, T, seed: losses.kl_divergence(p, s, T),
    "distillation_kl": lambda y, s, t, p, T, seed: losses.distillation_kl(p, s, T),
    "distillation_cross_entropy": lambda y, s, t, p, T, seed: losses.distillation_cross_entropy(
        p, s, T
    ),
    "kd_loss": lambda y, s, t, p, T, seed: losses.kd_loss(y, s, t, T, 0.7),
    "decoupled_kd": lambda y, s, t, p, T, seed: losses.decoupled_kd(y, s, t, T, 1.0, 8.0),
    "forward_kl": lambda y, s, t, p, T, seed: losses.forward_kl(t, s, T),
    "reverse_kl": lambda y, s, t, p, T, seed: losses.reverse_kl(t, s, T),
    "generalized_jsd": lambda y, s, t, p, T, seed: losses.generalized_jsd(t, s, T, 0.3),
    "sparse_topk_kl": lambda y, s, t, p, T, seed: losses.sparse_topk_kl(
        *_topk(t, max(1, t.shape[-1] // 2)), s, T
    ),
    "standardize_logits": lambda y, s, t, p, T, seed: targets.standardize_logits(s),
}
TARGETS = {
    "temperature": lambda y, t, T, seed: targets.build_target("temperature", temperature=T)(t, y),
    "calibrated_scale": lambda y, t, T, seed: targets.build_target(
        "calibrated", temperature=T, calibration_temperature=1.7
    )(t, y),
    "calibrated_replace": lambda y, t, T, seed: targets.build_target(
        "calibrated", temperature=T, calibration_temperature=1.7, calibration_mode="replace"
    )(t, y),
    "label_smoothing": lambda y, t, T, seed: partial_targets.label_smoothing(y, t.shape[-1], 0.2),
    "kd_pt": lambda y, t, T, seed: targets.build_target("kd_pt", temperature=T)(t, y),
    "kd_sim": lambda y, t, T, seed: partial_targets.kd_sim(
        _classifier_weights(t.shape[-1], seed), y, 1.0, 0.5
    ),
    "kd_pt_sim": lambda y, t, T, seed: targets.build_target(
        "kd_pt_sim",
        temperature=T,
        classifier_weights=_classifier_weights(t.shape[-1], seed),
        gamma=0.4,
    )(t, y),
    "kd_topk": lambda y, t, T, seed: targets.build_target(
        "kd_topk", temperature=T, topk=max(1, t.shape[-1] - 1)
    )(t, y),
    "kd_rel": lambda y, t, T, seed: partial_targets.kd_rel(
        y, _superclasses(t.shape[-1]), 0.7, 0.05, 0.01
    ),
}


def _topk(teacher_logits, k):
    """The teacher's top-k ids and log-probabilities at temperature 1."""
    z = np.asarray(teacher_logits, "float64")
    log_probs = z - z.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    ids = np.argsort(-log_probs, axis=-1)[..., :k]
    return ids.astype("int32"), np.take_along_axis(log_probs, ids, -1).astype("float32")


@pytest.mark.parametrize("name", sorted(LOSSES))
@SETTINGS
@given(shape=SHAPES, temperature=TEMPERATURES, seed=SEEDS)
def test_each_loss_on_sequences_equals_the_loss_on_flattened_rows(name, shape, temperature, seed):
    labels, student, teacher, probs = _case(shape, seed)
    function = LOSSES[name]
    _same(
        function(labels, student, teacher, probs, temperature, seed),
        function(_flat(labels), _flat(student), _flat(teacher), _flat(probs), temperature, seed),
        shape,
    )


@pytest.mark.parametrize("name", sorted(TARGETS))
@SETTINGS
@given(shape=SHAPES, temperature=TEMPERATURES, seed=SEEDS)
def test_each_target_on_sequences_equals_the_target_on_flattened_rows(
    name, shape, temperature, seed
):
    labels, _, teacher, _ = _case(shape, seed)
    function = TARGETS[name]
    on_sequences = np.asarray(function(labels, teacher, temperature, seed))
    assert on_sequences.shape == teacher.shape
    np.testing.assert_allclose(on_sequences.sum(-1), 1.0, rtol=1e-5)
    _same(on_sequences, function(_flat(labels), _flat(teacher), temperature, seed), shape)


@pytest.mark.parametrize("weighting", ["aver", "ebkd", "ca_mkd", "fixed"])
@SETTINGS
@given(shape=SHAPES, temperature=TEMPERATURES, seed=SEEDS, count=st.integers(2, 3))
def test_teacher_weights_are_computed_per_token(weighting, shape, temperature, seed, count):
    labels, student, _, _ = _case(shape, seed)
    teachers = (np.random.default_rng(seed + 2).normal(size=(count,) + student.shape) * 3).astype(
        "float32"
    )
    fixed = list(range(1, count + 1)) if weighting == "fixed" else None
    on_tokens = np.asarray(multi_teacher.teacher_weights(teachers, labels, weighting, fixed))
    assert on_tokens.shape == shape[:2] + (count,)
    np.testing.assert_allclose(on_tokens.sum(-1), 1.0, rtol=1e-5)
    flat_teachers = teachers.reshape((count, -1, shape[-1]))
    _same(
        on_tokens,
        multi_teacher.teacher_weights(flat_teachers, _flat(labels), weighting, fixed),
        shape,
    )
    distillation = multi_teacher.weighted_distillation(on_tokens, teachers, student, temperature)
    _same(
        distillation,
        multi_teacher.weighted_distillation(
            _flat(on_tokens), flat_teachers, _flat(student), temperature
        ),
        shape,
    )


@SETTINGS
@given(shape=SHAPES, temperature=TEMPERATURES, seed=SEEDS)
def test_dist_reads_every_token_as_one_row(shape, temperature, seed):
    """DIST is a batch statistic (a scalar): on [B, T, K] it is the DIST of the B * T token rows,
    and a 0/1 mask leaves the masked rows out exactly."""
    _, student, teacher, _ = _case(shape, seed)
    value = float(losses.dist_loss(student, teacher, temperature, 1.0, 2.0))
    assert value == pytest.approx(
        float(losses.dist_loss(_flat(student), _flat(teacher), temperature, 1.0, 2.0)),
        rel=1e-5,
        abs=1e-6,
    )
    mask = np.random.default_rng(seed + 3).random(shape[:2]) < 0.7
    if mask.sum() < 2:
        mask.flat[:2] = True
    kept = float(
        losses.dist_loss(
            _flat(student)[mask.reshape(-1)],
            _flat(teacher)[mask.reshape(-1)],
            temperature,
            1.0,
            2.0,
        )
    )
    masked = float(
        losses.dist_loss(student, teacher, temperature, 1.0, 2.0, weights=mask.astype("float32"))
    )
    assert masked == pytest.approx(kept, rel=1e-4, abs=1e-5)


def test_classifier_shapes_are_unchanged():
    """The [batch, K] -> [batch] contract of the first release, on one example of each."""
    labels, student, teacher, probs = _case((1, 5, 4), 0)
    labels, student, teacher, probs = labels[0], student[0], teacher[0], probs[0]
    for name, function in LOSSES.items():
        value = np.asarray(function(labels, student, teacher, probs, 2.0, 0))
        assert value.shape == ((5, 4) if name == "standardize_logits" else (5,)), name
    # Keras's classifier labels [batch, 1] are read as [batch].
    np.testing.assert_allclose(
        losses.decoupled_kd(labels[:, None], student, teacher),
        losses.decoupled_kd(labels, student, teacher),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        partial_targets.kd_pt(probs, labels[:, None]),
        partial_targets.kd_pt(probs, labels),
        rtol=1e-6,
    )
