"""Token-level distillation of a plain Keras model with [batch, time, K] outputs: one masked step
equals a NumPy reference (the sum of the masked per-token terms over the global count of valid
tokens) with the mask from `sample_weight`, from a `padding_mask` input and from labels of -100;
2 replicas with different numbers of valid tokens take the step 1 replica takes; token accuracy
over valid tokens; DIST reduces over tokens; multi-teacher weights per token."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfkd
from tfkd import losses, methods
from tfkd import teacher_weighting as multi_teacher

BATCH, TIME, FEATURES, CLASSES = 4, 5, 3, 4
TEMPERATURE, ALPHA, RATE = 2.0, 0.7, 0.5
# Valid tokens per sequence: the first two sequences (replica 0 of 2) hold 9, the last two 3.
LENGTHS = (5, 4, 2, 1)
SOURCES = ("sample_weight", "padding_mask", "ignored_labels")


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(-1, keepdims=True)


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _batch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, TIME, FEATURES)).astype("float32")
    y = rng.integers(0, CLASSES, (BATCH, TIME)).astype("int64")
    mask = (np.arange(TIME)[None, :] < np.array(LENGTHS)[:, None]).astype("float32")
    return x, y, mask


def _model(seed, dict_inputs=False):
    """A per-token linear layer: [batch, time, features] -> [batch, time, K] logits."""
    dense = keras.layers.Dense(
        CLASSES,
        kernel_initializer=keras.initializers.GlorotUniform(seed),
        bias_initializer=keras.initializers.RandomNormal(seed=seed + 1),
    )
    features = keras.Input((TIME, FEATURES), name="features")
    if not dict_inputs:
        return keras.Model(features, dense(features))
    padding_mask = keras.Input((TIME,), dtype="int32", name="padding_mask")
    # The mask reaches the output with no effect on it, so the model has both inputs.
    unchanged = features + 0.0 * keras.ops.expand_dims(keras.ops.cast(padding_mask, "float32"), -1)
    return keras.Model({"features": features, "padding_mask": padding_mask}, dense(unchanged))


def _dataset(source, x, y, mask, weights=None):
    """One global batch whose valid tokens are `mask`, said the way `source` says it."""
    if source == "sample_weight":
        tensors = (x, y, mask if weights is None else weights)
    elif source == "padding_mask":
        tensors = ({"features": x, "padding_mask": mask.astype("int32")}, y)
    else:
        tensors = (x, np.where(mask > 0, y, -100))
    return tf.data.Dataset.from_tensor_slices(tensors).batch(BATCH)


def reference_terms(student_logits, teacher_logits, y):
    """Per-token (CE, T^2 KL, loss) of Hinton's KD."""
    ce = -np.take_along_axis(_log_softmax(student_logits), y[..., None], -1)[..., 0]
    p_t = _softmax(teacher_logits / TEMPERATURE)
    kl = np.sum(p_t * (np.log(p_t) - _log_softmax(student_logits / TEMPERATURE)), -1)
    kd = TEMPERATURE**2 * kl
    return ce, kd, (1 - ALPHA) * ce + ALPHA * kd


def reference_step(kernel, bias, x, y, teacher_logits, weights):
    """One SGD step on sum(w * loss) / sum(w) of a linear student, from
    d/dz [(1-a) CE + a T^2 KL] = (1-a)(p_s - onehot) + a T (q_s - p_t)."""
    logits = x.astype("float64") @ kernel + bias
    gradient = (1 - ALPHA) * (_softmax(logits) - np.eye(CLASSES)[y]) + ALPHA * TEMPERATURE * (
        _softmax(logits / TEMPERATURE) - _softmax(teacher_logits / TEMPERATURE)
    )
    gradient *= weights[..., None] / weights.sum()
    return (
        kernel - RATE * np.einsum("btf,btk->fk", x, gradient),
        bias - RATE * gradient.sum((0, 1)),
    )


def _kd_step(strategy, source, weights=None):
    """(student weights after one step, the teacher's logits, the student's initial weights)."""
    x, y, mask = _batch()
    dict_inputs = source == "padding_mask"
    with strategy.scope():
        student, teacher = _model(1, dict_inputs), _model(10, dict_inputs)
        distiller = tfkd.Distiller(student, teacher, temperature=TEMPERATURE, alpha=ALPHA)
        distiller.compile(optimizer=keras.optimizers.SGD(RATE))
    inputs = {"features": x, "padding_mask": mask.astype("int32")} if dict_inputs else x
    teacher_logits = teacher.predict(inputs, verbose=0).astype("float64")
    start = [w.astype("float64") for w in student.get_weights()]
    distiller.fit(_dataset(source, x, y, mask, weights), epochs=1, verbose=0)
    return student.get_weights(), teacher_logits, start


@pytest.mark.parametrize("source", SOURCES)
def test_a_masked_kd_step_equals_the_numpy_reference(source):
    x, y, mask = _batch()
    got, teacher_logits, (kernel, bias) = _kd_step(tf.distribute.get_strategy(), source)
    expected = reference_step(kernel, bias, x, y, teacher_logits, mask)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Padding counted as tokens would give another step.
    unmasked = reference_step(kernel, bias, x, y, teacher_logits, np.ones_like(mask))
    assert np.abs(unmasked[0] - expected[0]).max() > 1e-3


def test_per_token_sample_weights_are_divided_by_their_global_sum():
    x, y, mask = _batch()
    weights = mask * np.random.default_rng(4).uniform(0.5, 2.0, mask.shape).astype("float32")
    got, teacher_logits, (kernel, bias) = _kd_step(
        tf.distribute.get_strategy(), "sample_weight", weights
    )
    for a, b in zip(got, reference_step(kernel, bias, x, y, teacher_logits, weights)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("source", SOURCES)
def test_two_replicas_with_unequal_valid_tokens_take_the_one_replica_step(mirrored, source):
    assert mirrored.num_replicas_in_sync == 2
    x, y, mask = _batch()
    assert mask[:2].sum() == 9 and mask[2:].sum() == 3  # what each replica holds
    one, teacher_logits, (kernel, bias) = _kd_step(tf.distribute.get_strategy(), source)
    two, _, _ = _kd_step(mirrored, source)
    expected = reference_step(kernel, bias, x, y, teacher_logits, mask)
    for a, b, c in zip(one, two, expected):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(b, c, rtol=1e-5, atol=1e-6)
    # Each replica's own mean, averaged, would weigh replica 1's 3 tokens like replica 0's 9.
    halves = [
        reference_step(kernel, bias, x[s], y[s], teacher_logits[s], mask[s])
        for s in (slice(0, 2), slice(2, 4))
    ]
    per_replica_kernel = kernel - sum(kernel - half[0] for half in halves) / 2
    assert np.abs(per_replica_kernel - expected[0]).max() > 1e-3


@pytest.mark.parametrize("source", SOURCES)
def test_evaluate_reports_the_masked_loss_and_token_accuracy(source, mirrored):
    x, y, mask = _batch()
    for strategy in (tf.distribute.get_strategy(), mirrored):
        dict_inputs = source == "padding_mask"
        with strategy.scope():
            student, teacher = _model(1, dict_inputs), _model(10, dict_inputs)
            distiller = tfkd.Distiller(student, teacher, temperature=TEMPERATURE, alpha=ALPHA)
            distiller.compile(optimizer="sgd", metrics=["accuracy"])
        logs = distiller.evaluate(_dataset(source, x, y, mask), return_dict=True, verbose=0)
        inputs = {"features": x, "padding_mask": mask.astype("int32")} if dict_inputs else x
        zs, zt = (m.predict(inputs, verbose=0).astype("float64") for m in (student, teacher))
        ce, kd, loss = reference_terms(zs, zt, y)
        valid = mask > 0
        assert logs["loss"] == pytest.approx(loss[valid].mean(), rel=1e-5)
        assert logs["student_loss"] == pytest.approx(ce[valid].mean(), rel=1e-5)
        assert logs["distillation_loss"] == pytest.approx(kd[valid].mean(), rel=1e-5)
        correct = np.argmax(zs, -1) == y
        assert logs["accuracy"] == pytest.approx(correct[valid].mean(), rel=1e-6)
        assert correct[valid].mean() != pytest.approx(correct.mean())


def test_without_a_mask_every_token_counts():
    x, y, mask = _batch()
    student, teacher = _model(1), _model(10)
    distiller = tfkd.Distiller(student, teacher, temperature=TEMPERATURE, alpha=ALPHA)
    distiller.compile(optimizer="sgd")
    logs = distiller.evaluate(x, y, batch_size=BATCH, return_dict=True, verbose=0)
    zs, zt = (m.predict(x, verbose=0).astype("float64") for m in (student, teacher))
    assert logs["loss"] == pytest.approx(reference_terms(zs, zt, y)[2].mean(), rel=1e-5)


def _pearson(a, b):
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-8)


def reference_dist_over_tokens(student_logits, teacher_logits, valid, temperature):
    """DIST with every valid token one row: inter over tokens, intra per class over tokens."""
    ys = _softmax(student_logits[valid] / temperature)
    yt = _softmax(teacher_logits[valid] / temperature)
    return temperature**2 * ((1 - _pearson(ys, yt).mean()) + (1 - _pearson(ys.T, yt.T).mean()))


def test_dist_on_sequences_reduces_over_valid_tokens(mirrored):
    x, y, mask = _batch()
    values = []
    for strategy in (tf.distribute.get_strategy(), mirrored):
        with strategy.scope():
            student, teacher = _model(1), _model(10)
            distiller = methods.build("dist", student, teacher, temperature=2.0)
            distiller.compile(optimizer="sgd")
        logs = distiller.evaluate(
            _dataset("sample_weight", x, y, mask), return_dict=True, verbose=0
        )
        values.append(logs["distillation_loss"])
    zs, zt = (m.predict(x, verbose=0).astype("float64") for m in (student, teacher))
    expected = reference_dist_over_tokens(zs, zt, mask > 0, 2.0)
    assert values[0] == pytest.approx(expected, rel=1e-4)
    assert values[1] == pytest.approx(expected, rel=1e-4)  # on the gathered global batch
    # Not over sequences (each sequence's mean distribution one row), nor over padding.
    sequences = reference_dist_over_tokens(
        zs.mean(1, keepdims=True), zt.mean(1, keepdims=True), np.ones((BATCH, 1), bool), 2.0
    )
    assert values[0] != pytest.approx(sequences, rel=1e-2)
    assert values[0] != pytest.approx(reference_dist_over_tokens(zs, zt, mask > -1, 2.0), rel=1e-3)


def test_dist_step_on_two_replicas_with_unequal_valid_tokens_is_the_one_replica_step(mirrored):
    x, y, mask = _batch()
    results = []
    initial = None
    for strategy in (tf.distribute.get_strategy(), mirrored):
        with strategy.scope():
            student, teacher = _model(1), _model(10)
            distiller = methods.build("dist", student, teacher, temperature=2.0)
            distiller.compile(optimizer=keras.optimizers.SGD(RATE))
        initial = initial or student.get_weights()
        distiller.fit(_dataset("ignored_labels", x, y, mask), epochs=1, verbose=0)
        results.append(student.get_weights())
    moved = max(np.abs(a - b).max() for a, b in zip(results[0], initial))
    assert moved > 1e-3
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)


def reference_ca_mkd_weights(teacher_logits, y):
    """CA-MKD Eq. 1-2 per token: (1 - softmax_k(CE(y, z_k))) / (K - 1) -> [B, T, K]."""
    ce = np.stack(
        [-np.take_along_axis(_log_softmax(z), y[..., None], -1)[..., 0] for z in teacher_logits], -1
    )
    return (1 - _softmax(ce)) / (len(teacher_logits) - 1)


def reference_ebkd_weights(teacher_logits):
    entropy = np.stack([-np.sum(_softmax(z) * _log_softmax(z), -1) for z in teacher_logits], -1)
    return (1 - entropy / entropy.sum(-1, keepdims=True)) / (len(teacher_logits) - 1)


@pytest.mark.parametrize("name", ["aver", "ebkd", "ca_mkd"])
def test_multi_teacher_weights_per_token_and_the_masked_loss(name):
    x, y, mask = _batch()
    student, teachers = _model(1), [_model(10), _model(20)]
    options = {"lambda2": 0.0} if name == "ca_mkd" else {}
    distiller = methods.build(name, student, teachers, temperature=TEMPERATURE, **options)
    distiller.compile(optimizer="sgd")
    labels = np.where(mask > 0, y, -100)
    logs = distiller.evaluate(_dataset("ignored_labels", x, y, mask), return_dict=True, verbose=0)
    zs, *zt = (m.predict(x, verbose=0).astype("float64") for m in (student, *teachers))
    expected_weights = {
        "aver": np.full(y.shape + (2,), 0.5),
        "ebkd": reference_ebkd_weights(zt),
        "ca_mkd": reference_ca_mkd_weights(zt, y),
    }[name]
    got_weights = np.asarray(
        multi_teacher.teacher_weights(
            np.stack(zt).astype("float32"), np.where(labels < 0, 0, labels), name
        )
    )
    valid = mask > 0
    np.testing.assert_allclose(got_weights[valid], expected_weights[valid], rtol=1e-4, atol=1e-6)
    kl = np.stack([reference_terms(zs, z, y)[1] for z in zt], -1)
    ce = reference_terms(zs, zt[0], y)[0]
    kd = np.sum(expected_weights * kl, -1)
    assert logs["distillation_loss"] == pytest.approx(kd[valid].mean(), rel=1e-4)
    assert logs["loss"] == pytest.approx((ce + kd)[valid].mean(), rel=1e-4)
    assert logs["teacher_0_weight"] == pytest.approx(
        expected_weights[..., 0][valid].mean(), rel=1e-4
    )


def test_ignored_labels_never_reach_cross_entropy():
    """Labels of -100 are replaced before any loss reads them: a finite loss and gradient."""
    x, y, mask = _batch()
    labels = np.where(mask > 0, y, -100)
    for name, options in (("kd", {}), ("dkd", {}), ("kd_pt", {})):
        distiller = methods.build(name, _model(1), _model(10), **options)
        distiller.compile(optimizer="sgd")
        history = distiller.fit(x, labels, batch_size=BATCH, epochs=1, verbose=0).history
        assert np.isfinite(history["loss"][0]), name
    assert (
        float(
            np.asarray(
                losses.cross_entropy(
                    np.where(labels < 0, 0, labels), np.zeros((BATCH, TIME, CLASSES))
                )
            )[0, 0]
        )
        > 0
    )
