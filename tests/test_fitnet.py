"""`--method=fitnet` against a NumPy reference written from Romero et al.'s (2015) hint loss."""

import keras
import numpy as np
import pytest

from tfkd import data, methods, models
from tfkd.distillers.fitnet import FitNetDistiller

IMAGE, CLASSES, BATCH = (8, 8, 3), 4, 8


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def reference_terms(labels, zs, zt, teacher_features, regressed, temperature, alpha, weight):
    """(1 - a) CE + a T^2 KL(p_t || p_s) + weight * 1/|F| ||F_t - r(h_s)||^2 per example."""
    rows = np.arange(len(labels))
    ce = -np.log(_softmax(zs)[rows, labels])
    pt, ps = _softmax(zt / temperature), _softmax(zs / temperature)
    kl = temperature**2 * np.sum(pt * (np.log(pt) - np.log(ps)), -1)
    hint = np.square(teacher_features - regressed).reshape(len(labels), -1).mean(-1)
    return (1 - alpha) * ce + alpha * kl + weight * hint, hint


def _images():
    rng = np.random.default_rng(2)
    return rng.random((BATCH, *IMAGE)).astype("float32"), rng.integers(0, CLASSES, BATCH)


def _dense_model(name, widths):
    """A functional model that is not from the zoo, with its own layer names."""
    inputs = keras.Input((6,))
    x = inputs
    for k, width in enumerate(widths):
        x = keras.layers.Dense(width, activation="relu", name=f"{name}_hidden{k}")(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name=f"{name}_logits")(x), name=name)


def test_terms_equal_the_numpy_reference_on_feature_maps():
    student = models.build("cnn_small", IMAGE, CLASSES, seed=0)
    teacher = models.build("resnet8", IMAGE, CLASSES, seed=1)
    distiller = methods.build(
        "fitnet", student, teacher, hint_weight=3.0, alpha=0.5, temperature=2.0
    )
    x, y = _images()
    student_features = student.get_layer(models.FEATURES).output
    teacher_features = keras.Model(teacher.input, teacher.get_layer(models.FEATURES).output)(x)
    h_s = keras.Model(student.input, student_features)(x)
    assert h_s.shape[1:3] != teacher_features.shape[1:3]  # the regressor resizes
    regressed = distiller.adapter(h_s, training=False).numpy()
    zs, zt = student(x).numpy(), teacher(x).numpy()
    terms = distiller.compute_terms(
        x, y, zs, zt, False, features=(h_s, np.asarray(teacher_features))
    )
    loss, hint = reference_terms(
        y,
        zs.astype("float64"),
        zt.astype("float64"),
        np.asarray(teacher_features, "float64"),
        regressed,
        2.0,
        0.5,
        3.0,
    )
    np.testing.assert_allclose(terms["hint_loss"], hint, rtol=1e-4)
    np.testing.assert_allclose(terms["loss"], loss, rtol=1e-4)


@pytest.mark.parametrize("run_eagerly", [True, False], ids=["eager", "graph"])
def test_any_functional_model_named_layers_and_only_student_and_regressor_train(run_eagerly):
    student = _dense_model("small", [8, 5])
    teacher = _dense_model("large", [16, 12])
    distiller = methods.build(
        "fitnet", student, teacher, student_layer="small_hidden1", teacher_layer="large_hidden0"
    )
    assert distiller.adapter.output.shape[1:] == (16,)
    distiller.compile(optimizer=keras.optimizers.SGD(0.01), run_eagerly=run_eagerly)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 6)).astype("float32"), rng.integers(0, CLASSES, 16)
    teacher_before = teacher.get_weights()
    adapter_before = distiller.adapter.get_weights()
    parameters = student.count_params()
    history = distiller.fit(data.as_dataset(x, y, 8), epochs=2, verbose=0).history
    assert all(np.isfinite(history[name]).all() for name in distiller.loss_terms)
    assert all(np.array_equal(a, b) for a, b in zip(teacher_before, teacher.get_weights()))
    assert not all(
        np.array_equal(a, b) for a, b in zip(adapter_before, distiller.adapter.get_weights())
    )
    # The regressor is not part of the exported student.
    assert student.count_params() == parameters
    assert not {id(v) for v in distiller.adapter.weights} & {id(v) for v in student.weights}


def test_default_layers_are_the_zoo_features_and_missing_layers_name_the_flag():
    student = models.build("mlp_small", (6,), CLASSES, seed=0)
    teacher = models.build("mlp", (6,), CLASSES, seed=1)
    distiller = methods.build("fitnet", student, teacher)
    assert isinstance(distiller, FitNetDistiller) and distiller.hint_weight == 100.0
    with pytest.raises(ValueError, match="teacher_layer: the teacher .* has no layer named 'nope'"):
        methods.build("fitnet", student, teacher, teacher_layer="nope")
    with pytest.raises(ValueError, match="--hint_weight must be >= 0"):
        methods.build("fitnet", student, teacher, hint_weight=-1.0)


def test_fixed_teaching_is_refused():
    from tfkd.teacher import batch_format

    student = models.build("mlp_small", (6,), CLASSES, seed=0)
    teacher = models.build("mlp", (6,), CLASSES, seed=1)
    stored = batch_format.StoredOutputs((np.zeros((2, CLASSES), np.float32),))
    with pytest.raises(ValueError, match="teacher_logits"):
        methods.build("fitnet", student, teacher).stored_outputs(stored)
