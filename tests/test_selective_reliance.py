"""kd_sr: the lambda formula, its per-batch use in the loss, replicas, and the method build."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfkd
from tfkd import curriculum, methods
from tfkd.data import DataBundle
from tfkd.distillers import selective_reliance
from tfkd.distillers.selective_reliance import SelectiveRelianceDistiller

CLASSES = 3


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _reference_lambda(mean_confidence, max_confidence, shift):
    return min(1.0, max(0.0, (1.0 - mean_confidence) / max_confidence - shift))


def _reference_loss(labels, student_logits, teacher_logits, temperature, weight):
    """(1 - l) CE + l T^2 KL(softmax(z_t / T) || softmax(z_s / T)), per example."""
    ce = -np.log(_softmax(student_logits)[np.arange(len(labels)), labels])
    p_t, q_s = _softmax(teacher_logits / temperature), _softmax(student_logits / temperature)
    kl = np.sum(p_t * (np.log(p_t) - np.log(q_s)), axis=-1)
    return (1 - weight) * ce + weight * temperature**2 * kl


@pytest.mark.parametrize(
    "confidence,maximum,shift",
    [(0.9, 1.0, 0.0), (0.6, 0.98, 0.05), (0.99, 0.99, 0.1), (0.0, 0.5, 0.0), (0.3, 0.8, 0.2)],
)
def test_lambda_formula_and_clipping(confidence, maximum, shift):
    expected = _reference_lambda(confidence, maximum, shift)
    assert curriculum.selective_reliance_lambda(confidence, maximum, shift) == pytest.approx(
        expected
    )
    tensor = curriculum.selective_reliance_lambda(tf.constant(confidence), maximum, shift)
    assert float(tensor) == pytest.approx(expected, abs=1e-6)
    assert 0.0 <= expected <= 1.0


def test_lambda_clips_both_ends_and_rejects_a_bad_maximum():
    assert curriculum.selective_reliance_lambda(0.999, 1.0, 0.1) == 0.0  # would be -0.099
    assert curriculum.selective_reliance_lambda(0.1, 0.5, 0.0) == 1.0  # would be 1.8
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="max_confidence"):
            curriculum.selective_reliance_lambda(0.5, bad, 0.0)


def _identity_teacher(scale=1.0):
    """Logits = scale * x, so a batch's teacher confidence is set by its inputs."""
    teacher = keras.Sequential(
        [keras.Input((CLASSES,)), keras.layers.Dense(CLASSES, use_bias=False)]
    )
    teacher.layers[0].set_weights([np.eye(CLASSES, dtype="float32") * scale])
    return teacher


def _student(seed=0):
    init = keras.initializers.GlorotUniform(seed=seed)
    return keras.Sequential(
        [
            keras.Input((CLASSES,)),
            keras.layers.Dense(8, kernel_initializer=init),
            keras.layers.ReLU(),
            keras.layers.Dense(CLASSES, kernel_initializer=init),
        ]
    )


def _batch(margin, n=16, seed=0):
    """Teacher logits x: class y ahead by `margin` (confident when large)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    x = rng.normal(scale=0.1, size=(n, CLASSES)).astype("float32")
    x[np.arange(n), y] += margin
    return x, y.astype("int32")


def test_evaluate_reports_the_reference_loss_with_the_batch_lambda():
    x, y = _batch(margin=1.0)
    teacher, student = _identity_teacher(), _student()
    distiller = SelectiveRelianceDistiller(
        student, teacher, max_confidence=0.95, temperature=3.0, reliance_shift=0.05
    )
    distiller.compile(optimizer="sgd")
    result = distiller.evaluate(x, y, batch_size=len(x), return_dict=True, verbose=0)
    weight = _reference_lambda(_softmax(x.astype(np.float64)).max(1).mean(), 0.95, 0.05)
    assert 0.1 < weight < 0.9  # an interior value, so both terms matter
    expected = _reference_loss(y, student.predict(x, verbose=0).astype(np.float64), x, 3.0, weight)
    assert result["reliance"] == pytest.approx(weight, rel=1e-5)
    assert result["loss"] == pytest.approx(expected.mean(), rel=1e-5)


def _step(distiller, x, y, learning_rate=0.5):
    distiller.compile(optimizer=keras.optimizers.SGD(learning_rate))
    history = distiller.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False)
    return [w.copy() for w in distiller.student.get_weights()], history.history


@pytest.mark.parametrize("margin", [5.0, 0.3])
def test_the_batch_lambda_is_the_kd_weight_of_the_step(margin):
    """One kd_sr step equals one plain KD step with alpha = this batch's lambda."""
    x, y = _batch(margin)
    start = _student(seed=1).get_weights()
    sr_student, kd_student = _student(), _student()
    sr_student.set_weights(start)
    kd_student.set_weights(start)
    weight = _reference_lambda(_softmax(x.astype(np.float64)).max(1).mean(), 0.99, 0.0)
    got, history = _step(SelectiveRelianceDistiller(sr_student, _identity_teacher(), 0.99), x, y)
    want, _ = _step(tfkd.Distiller(kd_student, _identity_teacher(), alpha=weight), x, y)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert history["reliance"][0] == pytest.approx(weight, rel=1e-5)


def test_confident_batches_pull_the_student_less_toward_the_teacher():
    """Teacher disagrees with the label on every example; the student's move toward the
    teacher's class is smaller on a batch where the teacher is confident."""
    moves = {}
    for name, margin in (("confident", 6.0), ("unsure", 0.4)):
        x, y = _batch(margin, seed=4)
        teacher_class = (y + 1) % CLASSES
        x_teacher = np.roll(x, 1, axis=1)  # teacher's favourite becomes class y + 1
        student = _student(seed=2)
        before = _softmax(student.predict(x_teacher, verbose=0))[np.arange(len(y)), teacher_class]
        distiller = SelectiveRelianceDistiller(
            student, _identity_teacher(), max_confidence=1.0, temperature=2.0
        )
        _, history = _step(distiller, x_teacher, y, learning_rate=0.2)
        after = _softmax(student.predict(x_teacher, verbose=0))[np.arange(len(y)), teacher_class]
        moves[name] = (np.mean(after - before), history["reliance"][0])
    assert moves["confident"][1] < 0.05 < 0.4 < moves["unsure"][1]
    assert moves["confident"][0] < moves["unsure"][0]


def _replica_step(strategy, x, y, start, global_mean=None):
    with strategy.scope():
        student = _student()
        student.set_weights(start)
        distiller = SelectiveRelianceDistiller(
            student, _identity_teacher(), max_confidence=0.9, temperature=4.0, reliance_shift=0.02
        )
        distiller.compile(optimizer=keras.optimizers.SGD(0.5), metrics=["accuracy"])
    rows = np.arange(len(x))[None]
    dataset, steps = curriculum.curriculum_dataset(x, y, rows, batch_size=len(x))
    history = distiller.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    return student.get_weights(), history.history, float(distiller.batch_reliance.numpy())


def _mirrored(devices):
    # Reduction through one device rather than collective ops: TensorFlow numbers collective
    # instances per process, so a second collective-op MirroredStrategy in the same test
    # process (another test file's) would meet the first one's instance shapes and abort.
    return tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
    )


def test_two_replicas_use_the_global_batch_confidence_and_match_one(monkeypatch):
    # Replica 0 gets the confident half, replica 1 the unsure half: local means differ a lot.
    confident, _ = _batch(6.0, n=16, seed=5)
    unsure, _ = _batch(0.2, n=16, seed=6)
    x = np.concatenate([confident, unsure])
    y = np.argmax(x, axis=1).astype("int32")
    start = _student(seed=9).get_weights()
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    assert len(devices) == 2
    one, h1, last1 = _replica_step(tf.distribute.OneDeviceStrategy(devices[0]), x, y, start)
    two, h2, last2 = _replica_step(_mirrored(devices), x, y, start)
    expected = _reference_lambda(_softmax(x.astype(np.float64)).max(1).mean(), 0.9, 0.02)
    assert h1["reliance"][0] == pytest.approx(expected, rel=1e-5)
    assert h2["reliance"][0] == pytest.approx(expected, rel=1e-5)
    assert last1 == pytest.approx(expected, rel=1e-5) and last2 == pytest.approx(expected, rel=1e-5)
    for a, b in zip(one, two):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    for name in ("loss", "student_loss", "distillation_loss", "accuracy"):
        assert h2[name][0] == pytest.approx(h1[name][0], rel=1e-5)
    # The same run with a per-replica mean takes a different step: the test can fail.
    monkeypatch.setattr(
        selective_reliance,
        "global_batch_mean",
        lambda values: tf.reduce_mean(tf.cast(values, tf.float32)),
    )
    local, _, _ = _replica_step(_mirrored(devices), x, y, start)
    assert max(np.abs(a - b).max() for a, b in zip(local, one)) > 1e-4


def _bundle(x, y, classes=CLASSES):
    return DataBundle(
        name="toy",
        train=(x, y),
        validation=(x[:0], y[:0]),
        test=(x, y),
        num_classes=classes,
        input_shape=x.shape[1:],
    )


def test_method_build_scores_the_teacher_once_for_the_maximum_confidence(monkeypatch):
    x, y = _batch(2.0, n=40, seed=7)
    calls = []
    original = curriculum.score
    monkeypatch.setattr(
        curriculum, "score", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
    )
    teacher, bundle = _identity_teacher(), _bundle(x, y)
    method = methods.METHODS.get("kd_sr")
    assert {o.name for o in method.options} == {"temperature", "reliance_shift"}
    first = method.build(_student(), teacher, bundle, {"temperature": 4.0, "reliance_shift": 0.1})
    second = method.build(_student(), teacher, bundle, {"temperature": 2.0, "reliance_shift": 0})
    assert len(calls) == 1
    assert first.max_confidence == pytest.approx(_softmax(x.astype(np.float64)).max(), rel=1e-5)
    assert second.max_confidence == first.max_confidence and first.reliance_shift == 0.1


def test_clear_errors_for_other_class_counts_and_bad_maximum():
    x, y = _batch(1.0, n=8)
    four = keras.Sequential([keras.Input((CLASSES,)), keras.layers.Dense(4)])
    with pytest.raises(ValueError, match="teacher predicts 4 classes but the data set has 3"):
        methods.METHODS.get("kd_sr").build(
            _student(), four, _bundle(x, y), {"temperature": 4.0, "reliance_shift": 0.0}
        )
    with pytest.raises(ValueError, match="disagree on the number of classes"):
        SelectiveRelianceDistiller(_student(), four, max_confidence=0.9)
    with pytest.raises(ValueError, match="max_confidence"):
        SelectiveRelianceDistiller(_student(), _identity_teacher(), max_confidence=0.0)
