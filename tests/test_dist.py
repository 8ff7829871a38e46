"""`--method=dist` against a NumPy reference written from Huang et al.'s (2022) equations, on one
replica and on the global batch of two."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfkd import data, methods, models
from tfkd.distillers.dist import DISTDistiller

CLASSES, BATCH = 5, 8


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _pearson_rows(a, b):
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-8)


def reference_loss(labels, student_logits, teacher_logits, temperature, beta, gamma, ce_weight):
    """ce_weight * mean CE + T^2 (beta (1 - mean_i rho(Y_s[i], Y_t[i])) +
    gamma (1 - mean_k rho(Y_s[:, k], Y_t[:, k]))), Y = softmax(z / T) over the whole batch."""
    ys, yt = _softmax(student_logits / temperature), _softmax(teacher_logits / temperature)
    inter = 1 - _pearson_rows(ys, yt).mean()
    intra = 1 - _pearson_rows(ys.T, yt.T).mean()
    ce = -np.log(_softmax(student_logits)[np.arange(len(labels)), labels]).mean()
    relation = temperature**2 * (beta * inter + gamma * intra)
    return ce_weight * ce + relation, relation


def _models():
    return (
        models.build("mlp_small", (6,), CLASSES, seed=0),
        models.build("mlp", (6,), CLASSES, seed=1),
    )


def _batch():
    rng = np.random.default_rng(5)
    return rng.normal(size=(BATCH, 6)).astype("float32"), rng.integers(0, CLASSES, BATCH)


OPTIONS = {"temperature": 2.0, "inter_weight": 1.5, "intra_weight": 0.5, "ce_weight": 0.7}


def _evaluate(strategy):
    x, y = _batch()
    with strategy.scope():
        student, teacher = _models()
        distiller = methods.build("dist", student, teacher, **OPTIONS)
        distiller.compile(optimizer="sgd")
    logs = distiller.evaluate(data.as_dataset(x, y, BATCH), return_dict=True, verbose=0)
    expected = reference_loss(
        y,
        student.predict(x, verbose=0).astype("float64"),
        teacher.predict(x, verbose=0).astype("float64"),
        2.0,
        1.5,
        0.5,
        0.7,
    )
    return logs, expected


def test_loss_equals_the_numpy_reference_on_the_whole_batch():
    logs, (loss, relation) = _evaluate(tf.distribute.get_strategy())
    assert logs["distillation_loss"] == pytest.approx(relation, rel=1e-4)
    assert logs["loss"] == pytest.approx(loss, rel=1e-4)


def test_two_replicas_compute_the_intra_class_term_on_the_global_batch(mirrored):
    logs, (loss, relation) = _evaluate(mirrored)
    x, y = _batch()
    # The per-replica halves would give another value: the term is a batch statistic.
    student, teacher = _models()
    halves = np.mean(
        [
            reference_loss(
                y[s],
                student(x[s]).numpy().astype("float64"),
                teacher(x[s]).numpy().astype("float64"),
                2.0,
                1.5,
                0.5,
                0.7,
            )[1]
            for s in (slice(0, 4), slice(4, 8))
        ]
    )
    assert abs(halves - relation) > 1e-3
    assert logs["distillation_loss"] == pytest.approx(relation, rel=1e-4)
    assert logs["loss"] == pytest.approx(loss, rel=1e-4)


@pytest.mark.parametrize("run_eagerly", [True, False], ids=["eager", "graph"])
def test_fit_trains_the_student_only(run_eagerly):
    student, teacher = _models()
    distiller = methods.build("dist", student, teacher)
    assert isinstance(distiller, DISTDistiller) and distiller.temperature == 1.0
    distiller.compile(optimizer=keras.optimizers.SGD(0.1), run_eagerly=run_eagerly)
    x, y = _batch()
    teacher_before, student_before = teacher.get_weights(), student.get_weights()
    history = distiller.fit(data.as_dataset(x, y, 4), epochs=2, verbose=0).history
    assert all(np.isfinite(history[name]).all() for name in distiller.loss_terms)
    assert all(np.array_equal(a, b) for a, b in zip(teacher_before, teacher.get_weights()))
    assert not all(np.array_equal(a, b) for a, b in zip(student_before, student.get_weights()))


def test_bad_option_is_refused_by_name():
    with pytest.raises(ValueError, match="--intra_weight must be >= 0, got -1"):
        methods.build("dist", *_models(), intra_weight=-1.0)
    with pytest.raises(ValueError, match="--temperature must be > 0, got 0"):
        methods.build("dist", *_models(), temperature=0.0)
