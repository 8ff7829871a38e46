"""`--method=dkd` against a NumPy reference written from Zhao et al.'s (2022) equations."""

import keras
import numpy as np
import pytest

from tfkd import data, methods, models
from tfkd.distillers.dkd import DecoupledDistiller

CLASSES, BATCH = 5, 16


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _kl(p, q):
    return np.sum(p * (np.log(p) - np.log(q)), -1)


def reference_loss(
    labels, student_logits, teacher_logits, epoch, temperature=4.0, alpha=1.0, beta=8.0, warmup=20
):
    """CE + min(epoch / warmup, 1) T^2 (alpha TCKD + beta NCKD), epoch counted from 1 (Eq. 1-7):
    b = (p_t, 1 - p_t), p^hat = the non-target probabilities renormalised."""
    rows = np.arange(len(labels))
    ps, pt = _softmax(student_logits / temperature), _softmax(teacher_logits / temperature)
    bs = np.stack([ps[rows, labels], 1 - ps[rows, labels]], -1)
    bt = np.stack([pt[rows, labels], 1 - pt[rows, labels]], -1)
    keep = np.ones_like(ps, bool)
    keep[rows, labels] = False
    qs = ps[keep].reshape(len(labels), -1)
    qt = pt[keep].reshape(len(labels), -1)
    qs, qt = qs / qs.sum(-1, keepdims=True), qt / qt.sum(-1, keepdims=True)
    dkd = temperature**2 * (alpha * _kl(bt, bs) + beta * _kl(qt, qs))
    ce = -np.log(_softmax(student_logits)[rows, labels])
    return ce + min(epoch / warmup, 1.0) * dkd, dkd


def _models(seed=0):
    student = models.build("mlp_small", (6,), CLASSES, seed=seed)
    teacher = models.build("mlp", (6,), CLASSES, seed=seed + 1)
    return student, teacher


def _batch():
    rng = np.random.default_rng(3)
    return rng.normal(size=(BATCH, 6)).astype("float32"), rng.integers(0, CLASSES, BATCH)


@pytest.mark.parametrize("epoch", [0, 4, 30])
def test_terms_equal_the_numpy_reference(epoch):
    student, teacher = _models()
    distiller = methods.build("dkd", student, teacher, tckd_weight=0.5, dkd_warmup_epochs=10)
    distiller.epoch.assign(epoch)  # 0-based, as fit sets it
    x, y = _batch()
    zs, zt = student(x).numpy(), teacher(x).numpy()
    terms = distiller.compute_terms(x, y, zs, zt, False)
    loss, dkd = reference_loss(
        y, zs.astype("float64"), zt.astype("float64"), epoch + 1, alpha=0.5, warmup=10
    )
    np.testing.assert_allclose(terms["distillation_loss"], dkd, rtol=1e-4)
    np.testing.assert_allclose(terms["loss"], loss, rtol=1e-4)
    assert float(terms["warmup"]) == pytest.approx(min((epoch + 1) / 10, 1.0))


@pytest.mark.parametrize("run_eagerly", [True, False], ids=["eager", "graph"])
def test_fit_warms_up_linearly_from_epoch_one(run_eagerly):
    student, teacher = _models()
    distiller = methods.build("dkd", student, teacher, dkd_warmup_epochs=4)
    distiller.compile(optimizer=keras.optimizers.SGD(0.01), run_eagerly=run_eagerly)
    x, y = _batch()
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    history = distiller.fit(data.as_dataset(x, y, 8), epochs=5, verbose=0).history
    np.testing.assert_allclose(history["warmup"], [0.25, 0.5, 0.75, 1.0, 1.0])
    assert all(np.isfinite(history[name]).all() for name in distiller.loss_terms)
    for before, after in zip(teacher_weights, teacher.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_defaults_are_mdistillers_cifar_settings():
    distiller = methods.build("dkd", *_models())
    assert isinstance(distiller, DecoupledDistiller)
    assert (
        distiller.temperature,
        distiller.tckd_weight,
        distiller.nckd_weight,
        distiller.warmup_epochs,
    ) == (4.0, 1.0, 8.0, 20)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"nckd_weight": -1.0}, "--nckd_weight must be >= 0, got -1.0"),
        ({"dkd_warmup_epochs": 0}, "--dkd_warmup_epochs must be >= 1, got 0"),
        ({"nckd": 2.0}, "method 'dkd' has no option nckd"),
    ],
)
def test_bad_options_are_refused_by_name(options, message):
    with pytest.raises(ValueError, match=message):
        methods.build("dkd", *_models(), **options)
