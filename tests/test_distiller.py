import keras
import numpy as np
import pytest
import tensorflow as tf

import tfkd
from tfkd import losses


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _reference_kd(labels, student_logits, teacher_logits, temperature, alpha):
    """NumPy, straight from Hinton et al.: (1-a) CE + a T^2 KL(p_t^T || p_s^T)."""
    p_s = _softmax(student_logits)
    ce = -np.log(p_s[np.arange(len(labels)), labels])
    p_t = _softmax(teacher_logits / temperature)
    q_s = _softmax(student_logits / temperature)
    kl = np.sum(p_t * (np.log(p_t) - np.log(q_s)), axis=-1)
    return (1 - alpha) * ce + alpha * temperature**2 * kl


def _mlp(classes=3, inputs=6, seed=0, batchnorm=False):
    init = keras.initializers.GlorotUniform(seed=seed)
    layers = [keras.Input((inputs,)), keras.layers.Dense(16, kernel_initializer=init)]
    if batchnorm:
        layers.append(keras.layers.BatchNormalization())
    layers += [keras.layers.ReLU(), keras.layers.Dense(classes, kernel_initializer=init)]
    return keras.Sequential(layers)


def _toy(n=96, inputs=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, inputs)).astype("float32")
    y = np.argmax(x[:, :classes], axis=1).astype("int32")
    return x, y


@pytest.mark.parametrize("temperature,alpha", [(1.0, 0.5), (4.0, 0.9), (2.5, 0.0), (8.0, 1.0)])
def test_kd_loss_matches_numpy_reference(temperature, alpha):
    rng = np.random.default_rng(1)
    student, teacher = rng.normal(size=(2, 7, 5)) * 3
    labels = rng.integers(0, 5, size=7)
    got = losses.kd_loss(
        labels, student.astype("float32"), teacher.astype("float32"), temperature, alpha
    )
    np.testing.assert_allclose(
        np.asarray(got), _reference_kd(labels, student, teacher, temperature, alpha), rtol=1e-5
    )


def test_distillation_loss_class_matches_reference_and_is_zero_at_equality():
    z = np.random.default_rng(2).normal(size=(4, 6)).astype("float32")
    loss = losses.DistillationLoss(temperature=3.0)
    assert float(loss(z, z)) == pytest.approx(0.0, abs=1e-6)
    zs = z[::-1].copy()
    expected = np.mean(_reference_kd(np.zeros(4, int), zs, z, 3.0, 1.0))
    assert float(loss(z, zs)) == pytest.approx(expected, rel=1e-5)


def test_distiller_reports_the_reference_loss_in_evaluate():
    x, y = _toy()
    student, teacher = _mlp(seed=1), _mlp(seed=2)
    distiller = tfkd.Distiller(student, teacher, temperature=4.0, alpha=0.7)
    distiller.compile(optimizer="sgd", metrics=["accuracy"])
    result = distiller.evaluate(x, y, batch_size=32, return_dict=True, verbose=0)
    per_example = _reference_kd(
        y, student.predict(x, verbose=0), teacher.predict(x, verbose=0), 4.0, 0.7
    )
    assert result["loss"] == pytest.approx(per_example.mean(), rel=1e-4)
    assert set(result) == {"loss", "student_loss", "distillation_loss", "accuracy"}
    assert result["student_loss"] > 0 and result["distillation_loss"] > 0


def test_fit_trains_student_only_and_loss_falls():
    x, y = _toy(n=256)
    teacher = _mlp(seed=3, batchnorm=True)
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, epochs=20, verbose=0)
    before = [w.copy() for w in teacher.get_weights()]  # includes BatchNorm moving statistics
    distiller = tfkd.Distiller(_mlp(seed=4), teacher, temperature=2.0, alpha=0.5)
    distiller.compile(optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"])
    history = distiller.fit(x, y, validation_data=(x, y), epochs=8, batch_size=32, verbose=0)
    for a, b in zip(before, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    h = history.history
    assert h["loss"][-1] < 0.6 * h["loss"][0]
    for name in ("loss", "student_loss", "distillation_loss", "accuracy"):
        assert h[name][-1] > 0 and h["val_" + name][-1] > 0
    assert h["val_accuracy"][-1] > 0.8


def test_call_returns_student_logits_and_distiller_is_not_saved_whole(tmp_path):
    x, _ = _toy(n=8)
    student, teacher = _mlp(seed=5), _mlp(seed=6)
    distiller = tfkd.Distiller(student, teacher)
    np.testing.assert_allclose(distiller(x), student(x), rtol=1e-6)
    with pytest.raises(NotImplementedError, match="student"):
        distiller.get_config()


def test_class_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(None, 3\).*\(None, 4\)"):
        tfkd.Distiller(_mlp(classes=3), _mlp(classes=4))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"alpha": 1.5}, r"alpha must be in \[0, 1\], got 1.5"),
        ({"temperature": 0.0}, "temperature must be > 0, got 0.0"),
    ],
)
def test_bad_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tfkd.Distiller(_mlp(), _mlp(), **kwargs)


def _one_step(strategy, x, y, teacher_weights, student_weights):
    with strategy.scope():
        teacher, student = _mlp(seed=0, batchnorm=True), _mlp(seed=0)
        teacher.set_weights(teacher_weights)
        student.set_weights(student_weights)
        distiller = tfkd.Distiller(student, teacher, temperature=4.0, alpha=0.9)
        distiller.compile(optimizer=keras.optimizers.SGD(0.5), metrics=["accuracy"])
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(len(x))
    history = distiller.fit(dataset, epochs=1, verbose=0)
    return student.get_weights(), history.history


def test_two_replicas_take_the_same_step_as_one(mirrored):
    x, y = _toy(n=32)
    teacher_weights = _mlp(seed=7, batchnorm=True).get_weights()
    student_weights = _mlp(seed=8).get_weights()
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    assert len(devices) == 2
    one, h1 = _one_step(
        tf.distribute.OneDeviceStrategy(devices[0]), x, y, teacher_weights, student_weights
    )
    two, h2 = _one_step(mirrored, x, y, teacher_weights, student_weights)
    moved = max(np.abs(a - b).max() for a, b in zip(one, student_weights))
    assert moved > 1e-3  # the step did something
    for a, b in zip(one, two):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    for name in ("loss", "student_loss", "distillation_loss", "accuracy"):
        assert h2[name][0] == pytest.approx(h1[name][0], rel=1e-5)
