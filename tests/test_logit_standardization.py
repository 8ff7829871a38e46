"""Logit standardization (Sun et al., CVPR 2024) against a NumPy reference written from the
official code, its properties, and `--logit_standardization` in kd, dkd and the multi-teacher
methods."""

import os

import keras
import numpy as np
import pytest

import tfkd
from tfkd import experiment, losses, methods, targets
from tfkd.experiment import job

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGFILE = os.path.join(ROOT, "configs", "methods", "kd_logit_standardization.flags")
DECLARING = ("kd", "dkd", "aver", "ebkd", "ca_mkd")


def reference_standardize(z):
    """The official `normalize`: (z - mean) / (1e-7 + std), torch's default std (ddof = 1)."""
    z = np.asarray(z, "float64")
    return (z - z.mean(-1, keepdims=True)) / (1e-7 + z.std(-1, ddof=1, keepdims=True))


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(-1, keepdims=True)


def _kl(p, q):
    return np.sum(p * (np.log(p) - np.log(q)), -1)


def test_standardize_logits_matches_the_official_code():
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(3, 4, 7)) * 5 + 2).astype("float32")
    got = np.asarray(targets.standardize_logits(logits))
    np.testing.assert_allclose(got, reference_standardize(logits), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.mean(-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(got.std(-1, ddof=1), 1.0, rtol=1e-5)
    # Invariant to the logits' range: a positive scale and a shift change nothing.
    np.testing.assert_allclose(
        targets.standardize_logits(3.0 * logits - 7.0), got, rtol=1e-4, atol=1e-5
    )
    # A constant vector gives zeros, not NaN (the epsilon); one logit cannot be standardized.
    np.testing.assert_array_equal(
        targets.standardize_logits(np.full((2, 5), 4.0, "float32")), np.zeros((2, 5))
    )
    with pytest.raises(ValueError, match="K >= 2"):
        targets.standardize_logits(np.zeros((2, 1), "float32"))


def _mlp(seed, classes=5):
    init = keras.initializers.GlorotUniform(seed)
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, activation="relu", kernel_initializer=init),
            keras.layers.Dense(classes, kernel_initializer=init),
        ]
    )


def _data():
    rng = np.random.default_rng(3)
    return rng.normal(size=(12, 6)).astype("float32"), rng.integers(0, 5, 12)


def _logits(models, x):
    return [model.predict(x, verbose=0).astype("float64") for model in models]


def test_kd_with_logit_standardization_equals_the_reference():
    """(1 - alpha) CE(y, z_s) + alpha T^2 KL(softmax(Z(z_t) / T) || softmax(Z(z_s) / T)): the
    cross-entropy reads the raw logits, the KD term the standardized ones."""
    x, y = _data()
    student, teacher = _mlp(1), _mlp(2)
    distiller = methods.build(
        "kd", student, teacher, temperature=2.0, alpha=0.8, logit_standardization=True
    )
    distiller.compile(optimizer="sgd")
    logs = distiller.evaluate(x, y, batch_size=12, return_dict=True, verbose=0)
    zs, zt = _logits((student, teacher), x)
    kd = 4.0 * _kl(
        _softmax(reference_standardize(zt) / 2.0), _softmax(reference_standardize(zs) / 2.0)
    )
    ce = -np.log(_softmax(zs)[np.arange(12), y])
    assert logs["distillation_loss"] == pytest.approx(kd.mean(), rel=1e-4)
    assert logs["student_loss"] == pytest.approx(ce.mean(), rel=1e-4)
    assert logs["loss"] == pytest.approx((0.2 * ce + 0.8 * kd).mean(), rel=1e-4)
    plain = methods.build("kd", student, teacher, temperature=2.0, alpha=0.8)
    plain.compile(optimizer="sgd")
    assert plain.evaluate(x, y, batch_size=12, return_dict=True, verbose=0)[
        "distillation_loss"
    ] != pytest.approx(kd.mean(), rel=1e-3)


def test_dkd_with_logit_standardization_reads_standardized_logits():
    x, y = _data()
    student, teacher = _mlp(1), _mlp(2)
    distiller = methods.build("dkd", student, teacher, temperature=2.0, logit_standardization=True)
    distiller.compile(optimizer="sgd")
    logs = distiller.evaluate(x, y, batch_size=12, return_dict=True, verbose=0)
    zs, zt = _logits((student, teacher), x)
    expected = losses.decoupled_kd(
        y,
        reference_standardize(zs).astype("float32"),
        reference_standardize(zt).astype("float32"),
        2.0,
        1.0,
        8.0,
    )
    assert logs["distillation_loss"] == pytest.approx(float(np.mean(expected)), rel=1e-4)


@pytest.mark.parametrize("name", ["aver", "ebkd", "ca_mkd"])
def test_multi_teacher_methods_standardize_the_kd_term_and_weigh_on_raw_logits(name):
    x, y = _data()
    student, teachers = _mlp(1), [_mlp(2), _mlp(3)]
    options = {"lambda2": 0.0} if name == "ca_mkd" else {}
    distiller = methods.build(
        name, student, teachers, temperature=3.0, logit_standardization=True, **options
    )
    distiller.compile(optimizer="sgd")
    logs = distiller.evaluate(x, y, batch_size=12, return_dict=True, verbose=0)
    zs, *zt = _logits([student, *teachers], x)
    weights = np.asarray(
        tfkd.teacher_weighting.teacher_weights(np.stack(zt).astype("float32"), y, name)
    )
    kl = np.stack(
        [
            9.0
            * _kl(
                _softmax(reference_standardize(z) / 3.0), _softmax(reference_standardize(zs) / 3.0)
            )
            for z in zt
        ],
        -1,
    )
    assert logs["distillation_loss"] == pytest.approx(np.mean(np.sum(weights * kl, -1)), rel=1e-4)


def test_the_option_is_declared_by_kd_dkd_and_the_multi_teacher_methods():
    for name in DECLARING:
        option = methods.METHODS.get(name).option("logit_standardization")
        assert option.default is False and "Sun et al. 2024" in option.help
    assert methods.all_options()["logit_standardization"].default is False


def test_the_flagfile_parses_checks_and_builds():
    config = experiment.RunConfig.from_flags([f"--flagfile={FLAGFILE}"])
    assert config.method.name == "kd"
    assert config.method.options["logit_standardization"] is True
    assert config.method.options["temperature"] == 2.0
    job.check(config)
    distiller = methods.build("kd", _mlp(1), _mlp(2), **config.method.options)
    assert distiller.logit_standardization
    assert experiment.RunConfig.from_flags(config.to_flags()) == config
