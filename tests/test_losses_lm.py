"""`tfkd.losses`' language-model divergences (forward KL, reverse KL, generalized JSD, sparse
top-k KL) against NumPy references written from their equations, their special cases,
stability, and `kd` with `divergence=`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfkd
from tfkd import losses


def _log_softmax(z):
    z = np.asarray(z, "float64")
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _kl(log_p, log_q):
    return np.sum(np.exp(log_p) * (log_p - log_q), -1)


def reference_forward(teacher, student, temperature):
    """T^2 KL(p_T || p_S), p = softmax(z / T)."""
    return temperature**2 * _kl(
        _log_softmax(teacher / temperature), _log_softmax(student / temperature)
    )


def reference_reverse(teacher, student, temperature):
    """T^2 KL(p_S || p_T)."""
    return temperature**2 * _kl(
        _log_softmax(student / temperature), _log_softmax(teacher / temperature)
    )


def reference_jsd(teacher, student, temperature, beta):
    """GKD's Eq. 1, literally: beta KL(p_T || M) + (1 - beta) KL(p_S || M), M the mixture."""
    p_t = np.exp(_log_softmax(teacher / temperature))
    p_s = np.exp(_log_softmax(student / temperature))
    mixture = beta * p_t + (1 - beta) * p_s
    return temperature**2 * (
        beta * np.sum(p_t * np.log(p_t / mixture), -1)
        + (1 - beta) * np.sum(p_s * np.log(p_s / mixture), -1)
    )


def _logits(seed, shape=(2, 3, 11), scale=2.5):
    rng = np.random.default_rng(seed)
    teacher, student = (rng.normal(size=(2,) + shape) * scale).astype("float32")
    return teacher, student


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.7])
def test_forward_and_reverse_kl_match_the_reference(temperature):
    teacher, student = _logits(int(temperature * 10))
    forward = np.asarray(losses.forward_kl(teacher, student, temperature))
    assert forward.shape == (2, 3)
    np.testing.assert_allclose(
        forward, reference_forward(teacher, student, temperature), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        losses.reverse_kl(teacher, student, temperature),
        reference_reverse(teacher, student, temperature),
        rtol=1e-5,
        atol=1e-6,
    )
    # Forward KL is Hinton's KD term.
    target = np.exp(_log_softmax(teacher / temperature)).astype("float32")
    np.testing.assert_allclose(
        forward, losses.distillation_kl(target, student, temperature), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_generalized_jsd_matches_the_reference(beta, temperature):
    teacher, student = _logits(int(beta * 10 + temperature))
    np.testing.assert_allclose(
        losses.generalized_jsd(teacher, student, temperature, beta),
        reference_jsd(teacher, student, temperature, beta),
        rtol=1e-5,
        atol=1e-6,
    )


def test_generalized_jsd_is_forward_kl_at_beta_0_and_reverse_kl_at_beta_1_exactly():
    """As TRL's generalized_jsd_loss: beta = 0 -> KL(p_T || p_S), beta = 1 -> KL(p_S || p_T),
    special-cased (the formula itself is 0 at both ends)."""
    teacher, student = _logits(7)
    for temperature in (1.0, 2.0):
        np.testing.assert_array_equal(
            losses.generalized_jsd(teacher, student, temperature, 0.0),
            losses.forward_kl(teacher, student, temperature),
        )
        np.testing.assert_array_equal(
            losses.generalized_jsd(teacher, student, temperature, 1.0),
            losses.reverse_kl(teacher, student, temperature),
        )
    near_zero = np.asarray(losses.generalized_jsd(teacher, student, 1.0, 1e-6))
    assert np.abs(near_zero).max() < 1e-4  # the limit is 0, not the forward KL
    # Symmetric at 0.5, and 0 for equal models.
    np.testing.assert_allclose(
        losses.generalized_jsd(teacher, student, 1.0, 0.5),
        losses.generalized_jsd(student, teacher, 1.0, 0.5),
        rtol=1e-5,
    )
    np.testing.assert_allclose(losses.generalized_jsd(teacher, teacher, 1.0, 0.3), 0.0, atol=1e-6)
    with pytest.raises(ValueError, match=r"beta \(generalized JSD\) must be in \[0, 1\]"):
        losses.generalized_jsd(teacher, student, 1.0, 1.5)


def test_divergences_stay_finite_for_confident_logits():
    teacher, student = _logits(3, scale=1.0)
    teacher, student = (tf.constant(np.sign(z) * 80.0, tf.float32) for z in (teacher, student))
    for name in ("forward_kl", "reverse_kl", "jsd"):
        with tf.GradientTape() as tape:
            tape.watch(student)
            value = losses.divergence(name, jsd_beta=0.5)(teacher, student, 1.0)
        gradient = tape.gradient(value, student).numpy()
        assert np.all(np.isfinite(value.numpy())) and np.all(np.isfinite(gradient)), name


def test_the_registry_lists_the_divergences_and_refuses_unknown_names():
    assert losses.DIVERGENCES.names() == ["forward_kl", "jsd", "reverse_kl"]
    teacher, student = _logits(4)
    np.testing.assert_array_equal(
        losses.divergence("jsd", jsd_beta=0.25)(teacher, student, 2.0),
        losses.generalized_jsd(teacher, student, 2.0, 0.25),
    )
    with pytest.raises(ValueError, match="divergence 'tvd' is not registered; known: forward_kl"):
        losses.divergence("tvd")


def _topk(teacher, k):
    log_probs = _log_softmax(teacher)
    ids = np.argsort(-log_probs, axis=-1)[..., :k]
    return ids.astype("int32"), np.take_along_axis(log_probs, ids, -1)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_sparse_topk_kl_with_every_token_stored_is_the_forward_kl(temperature):
    teacher, student = _logits(11)
    ids, log_probs = _topk(teacher, teacher.shape[-1])
    expected = losses.forward_kl(teacher, student, temperature)
    for dtype, tolerance in (("float32", 1e-5), ("float16", 2e-2)):
        got = losses.sparse_topk_kl(ids, log_probs.astype(dtype), student, temperature)
        np.testing.assert_allclose(got, expected, rtol=tolerance, atol=tolerance)
    # The order of the stored ids does not matter.
    shuffled = np.random.default_rng(0).permutation(teacher.shape[-1])
    np.testing.assert_allclose(
        losses.sparse_topk_kl(
            ids[..., shuffled], log_probs[..., shuffled].astype("float32"), student, temperature
        ),
        expected,
        rtol=1e-5,
        atol=1e-6,
    )


def reference_sparse(ids, log_probs, student, temperature, vocabulary, tail=True):
    """The top-k terms plus the tail bucket, the tail's mass spread uniformly over the V - k
    tokens not stored when the teacher is re-tempered."""
    k = ids.shape[-1]
    p = np.exp(log_probs.astype("float64"))
    tail_mass = 1.0 - p.sum(-1)
    scaled = p ** (1.0 / temperature)
    scaled_tail = (vocabulary - k) * (tail_mass / (vocabulary - k)) ** (1.0 / temperature)
    normaliser = scaled.sum(-1) + scaled_tail
    q_topk, q_tail = scaled / normaliser[..., None], scaled_tail / normaliser
    log_student = _log_softmax(student / temperature)
    s_topk = np.take_along_axis(log_student, ids, -1)
    s_tail = 1.0 - np.exp(s_topk).sum(-1)
    value = np.sum(q_topk * (np.log(q_topk) - s_topk), -1)
    if tail:
        value = value + q_tail * (np.log(q_tail) - np.log(s_tail))
    return temperature**2 * value


@pytest.mark.parametrize("k", [1, 3, 8])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_sparse_topk_kl_tail_bucket_matches_the_reference(k, temperature):
    teacher, student = _logits(20 + k)
    vocabulary = teacher.shape[-1]
    ids, log_probs = _topk(teacher, k)
    for tail in (True, False):
        np.testing.assert_allclose(
            losses.sparse_topk_kl(ids, log_probs.astype("float32"), student, temperature, tail),
            reference_sparse(ids, log_probs, student, temperature, vocabulary, tail),
            rtol=1e-4,
            atol=1e-5,
        )


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_sparse_topk_kl_reads_a_stored_tail_mass(temperature):
    """The tail mass stored at full precision beside float16 log-probabilities gives the
    reference of the exact log-probabilities."""
    teacher, student = _logits(31)
    vocabulary = teacher.shape[-1]
    ids, log_probs = _topk(teacher, 4)
    stored_tail = (1.0 - np.exp(log_probs).sum(-1)).astype("float32")
    np.testing.assert_allclose(
        losses.sparse_topk_kl(ids, log_probs.astype("float32"), student, temperature, stored_tail),
        reference_sparse(ids, log_probs, student, temperature, vocabulary),
        rtol=1e-4,
        atol=1e-5,
    )
    rounded = log_probs.astype("float16")
    np.testing.assert_allclose(
        losses.sparse_topk_kl(ids, rounded, student, temperature, stored_tail),
        reference_sparse(ids, log_probs, student, temperature, vocabulary),
        rtol=2e-2,
        atol=2e-3,
    )


def test_sparse_topk_kl_at_temperature_1_is_the_equation_of_the_issue():
    """sum_{top-k} p_T,i (log p_T,i - log p_S,i) + (1 - sum p_T) log((1 - sum p_T) / (1 - sum
    p_S)), from the stored log-probabilities themselves."""
    teacher, student = _logits(5, shape=(4, 9))
    ids, log_probs = _topk(teacher, 4)
    p_t = np.exp(log_probs)
    log_p_s = np.take_along_axis(_log_softmax(student), ids, -1)
    topk = np.sum(p_t * (log_probs - log_p_s), -1)
    tail = (1 - p_t.sum(-1)) * np.log((1 - p_t.sum(-1)) / (1 - np.exp(log_p_s).sum(-1)))
    np.testing.assert_allclose(
        losses.sparse_topk_kl(ids, log_probs.astype("float32"), student),
        topk + tail,
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        losses.sparse_topk_kl(ids, log_probs.astype("float32"), student, tail=False),
        topk,
        rtol=1e-5,
        atol=1e-6,
    )
    # The coarse (k + 1)-bucket KL never exceeds the full one (log-sum inequality).
    assert np.all(topk + tail <= reference_forward(teacher, student, 1.0) + 1e-6)


def test_sparse_topk_kl_gradients_are_finite_and_bad_shapes_are_refused():
    teacher, student = _logits(9)
    student = tf.constant(student)
    for k in (2, teacher.shape[-1]):
        ids, log_probs = _topk(teacher, k)
        with tf.GradientTape() as tape:
            tape.watch(student)
            value = losses.sparse_topk_kl(ids, log_probs.astype("float32"), student, 2.0)
        assert np.all(np.isfinite(tape.gradient(value, student).numpy()))
    # A student with (almost) no mass outside the stored tokens still gives a finite value.
    sharp = np.zeros((1, 5), "float32")
    sharp[0, 0] = 60.0
    ids, log_probs = _topk(np.array([[3.0, 2.0, 1.0, 0.0, -1.0]]), 2)
    assert np.isfinite(
        np.asarray(losses.sparse_topk_kl(ids, log_probs.astype("float32"), sharp))
    ).all()
    with pytest.raises(ValueError, match="top-k of 12 ids for a vocabulary of 11"):
        losses.sparse_topk_kl(
            np.zeros((2, 3, 12), "int32"), np.zeros((2, 3, 12), "float32"), student
        )


def _sequence_model(seed, classes=6, time=4, features=3):
    init = keras.initializers.GlorotUniform(seed)
    inputs = keras.Input((time, features))
    return keras.Model(inputs, keras.layers.Dense(classes, kernel_initializer=init)(inputs))


@pytest.mark.parametrize(
    "divergence,beta", [("reverse_kl", 0.5), ("jsd", 0.3), ("forward_kl", 0.5)]
)
def test_kd_with_a_divergence_reports_the_reference_loss(divergence, beta):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 4, 3)).astype("float32")
    y = rng.integers(0, 6, (5, 4))
    student, teacher = _sequence_model(1), _sequence_model(2)
    distiller = tfkd.methods.build(
        "kd", student, teacher, temperature=2.0, alpha=0.6, divergence=divergence, jsd_beta=beta
    )
    distiller.compile(optimizer="sgd")
    logs = distiller.evaluate(x, y, batch_size=5, return_dict=True, verbose=0)
    zs = student.predict(x, verbose=0).astype("float64")
    zt = teacher.predict(x, verbose=0).astype("float64")
    term = {
        "reverse_kl": reference_reverse,
        "forward_kl": reference_forward,
        "jsd": lambda t, s, temperature: reference_jsd(t, s, temperature, beta),
    }[divergence](zt, zs, 2.0)
    ce = -np.take_along_axis(_log_softmax(zs), y[..., None], -1)[..., 0]
    assert logs["distillation_loss"] == pytest.approx(term.mean(), rel=1e-4)
    assert logs["loss"] == pytest.approx((0.4 * ce + 0.6 * term).mean(), rel=1e-4)


def test_a_divergence_other_than_forward_kl_takes_only_the_temperature_target():
    with pytest.raises(
        ValueError, match="divergence 'jsd' compares .* no teacher target but 'temperature'"
    ):
        tfkd.Distiller(
            _sequence_model(1),
            _sequence_model(2),
            target="kd_topk",
            target_options={"topk": 2},
            divergence="jsd",
        )
    with pytest.raises(ValueError, match="--divergence must be one of forward_kl, jsd, reverse_kl"):
        tfkd.methods.build("kd", _sequence_model(1), _sequence_model(2), divergence="tvd")
