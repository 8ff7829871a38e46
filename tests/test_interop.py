"""tfkd teacher targets inside keras.distillation.Distiller give tfkd.Distiller's numbers."""

import keras
import numpy as np
import partial_reference as ref
import pytest
import tensorflow as tf

import tfkd
from tfkd.interop import LabelledDistiller, TargetDistillation, needs_labels
from tfkd.models.introspection import classifier_weights
from tfkd.targets import build_target

CLASSES, INPUTS, BATCH = 4, 5, 16


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _model(seed):
    init = keras.initializers.GlorotUniform(seed=seed)
    return keras.Sequential(
        [
            keras.Input((INPUTS,)),
            keras.layers.Dense(8, activation="relu", kernel_initializer=init),
            keras.layers.Dense(CLASSES, kernel_initializer=init, name="classifier"),
        ]
    )


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, INPUTS)).astype("float32")
    return x, rng.integers(0, CLASSES, BATCH).astype("int32")


def _one_step(distiller, x, y):
    history = distiller.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    return history.history["distillation_loss"][0], distiller.student.get_weights()


def test_value_is_hintons_t2_kl_and_keras_default_is_not():
    rng = np.random.default_rng(3)
    teacher, student = (rng.normal(size=(2, 8, 6)) * 3).astype("float32")
    p_t, p_s = _softmax(teacher / 4.0), _softmax(student / 4.0)
    hinton = np.mean(16.0 * np.sum(p_t * (np.log(p_t) - np.log(p_s)), -1))
    assert float(
        TargetDistillation(temperature=4.0).compute_loss(teacher, student)
    ) == pytest.approx(hinton, rel=1e-5)
    keras_default = float(keras.distillation.LogitsDistillation(4.0).compute_loss(teacher, student))
    assert keras_default != pytest.approx(hinton, rel=0.1)


def _kd_sim_options(teacher):
    return {"classifier_weights": classifier_weights(teacher, "classifier")}


TARGETS = [  # (target, options or a function of the teacher giving them, label-reading)
    ("temperature", {}, False),
    ("calibrated", {"calibration_temperature": 2.0}, False),
    ("kd_topk", {"topk": 2}, False),
    ("kd_pt", {}, True),
    ("kd_sim", _kd_sim_options, True),
    ("kd_pt_sim", lambda teacher: {**_kd_sim_options(teacher), "gamma": 0.3}, True),
]


@pytest.mark.parametrize("target,options,reads_labels", TARGETS, ids=[t[0] for t in TARGETS])
def test_keras_distiller_takes_tfkd_distillers_step(target, options, reads_labels):
    x, y = _batch()
    teacher = _model(seed=2)
    options = options(teacher) if callable(options) else options
    start = _model(seed=1).get_weights()
    assert needs_labels(build_target(target, temperature=3.0, **options)) == reads_labels

    keras_student = _model(seed=1)
    keras_student.set_weights(start)
    keras_type = LabelledDistiller if reads_labels else keras.distillation.Distiller
    keras_distiller = keras_type(
        teacher,
        keras_student,
        TargetDistillation(target, temperature=3.0, **options),
        student_loss_weight=0.0,
    )
    keras_distiller.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    keras_value, keras_weights = _one_step(keras_distiller, x, y)

    tfkd_student = _model(seed=1)
    tfkd_student.set_weights(start)
    tfkd_distiller = tfkd.Distiller(
        tfkd_student, teacher, temperature=3.0, alpha=1.0, target=target, target_options=options
    )
    tfkd_distiller.compile(optimizer=keras.optimizers.SGD(0.5))
    tfkd_value, tfkd_weights = _one_step(tfkd_distiller, x, y)

    # The reference: NumPy targets from the papers' definitions, T^2 KL by hand, one SGD step.
    value, weights = _reference_step(target, teacher, start, x, y)
    assert value > 1e-3
    assert keras_value == pytest.approx(value, rel=1e-5)
    assert tfkd_value == pytest.approx(value, rel=1e-5)
    assert max(np.abs(a - b).max() for a, b in zip(weights, start)) > 1e-3
    for a, b, c in zip(keras_weights, tfkd_weights, weights):
        np.testing.assert_allclose(a, c, atol=1e-6)
        np.testing.assert_allclose(b, c, atol=1e-6)


def _reference_target(target, teacher, x, y, temperature=3.0):
    probs = ref.softmax(teacher(x).numpy().astype(np.float64) / temperature)
    sim = lambda: ref.ref_kd_sim(teacher.get_layer("classifier").kernel.numpy().T, y, 1.0, 0.1)
    return {
        "temperature": lambda: probs,
        "calibrated": lambda: ref.softmax(teacher(x).numpy() / (2.0 * temperature)),
        "kd_topk": lambda: ref.ref_kd_topk(probs, 2),
        "kd_pt": lambda: ref.ref_kd_pt(probs, y),
        "kd_sim": sim,
        "kd_pt_sim": lambda: 0.3 * ref.ref_kd_pt(probs, y) + 0.7 * sim(),
    }[target]()


def _reference_step(target, teacher, start, x, y, temperature=3.0, rate=0.5):
    """(batch mean of T^2 KL(target || softmax(z_s / T)), the weights after one SGD step)."""
    targets = _reference_target(target, teacher, x, y)
    student = _model(seed=1)
    student.set_weights(start)
    value = float(np.mean(ref.ref_kl_distance(targets, student(x).numpy(), temperature)))
    fixed = tf.constant(targets, tf.float32)
    with tf.GradientTape() as tape:
        log_q = tf.nn.log_softmax(student(x) / temperature)
        safe = tf.where(fixed > 0, fixed, 1.0)
        loss = tf.reduce_mean(
            temperature**2 * tf.reduce_sum(fixed * (tf.math.log(safe) - log_q), -1)
        )
    gradients = tape.gradient(loss, student.trainable_weights)
    return value, [w - rate * g.numpy() for w, g in zip(start, gradients)]


def test_label_reading_target_refuses_keras_distiller_without_labels():
    x, y = _batch()
    distiller = keras.distillation.Distiller(
        _model(2), _model(1), TargetDistillation("kd_pt"), student_loss_weight=0.5
    )
    distiller.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(True))
    with pytest.raises(ValueError, match="'kd_pt' needs the true labels.*LabelledDistiller"):
        distiller.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    teacher_logits = np.zeros((2, CLASSES), "float32")
    labelled = TargetDistillation("kd_pt", temperature=2.0).compute_loss(
        teacher_logits, teacher_logits, labels=np.array([0, 1])
    )
    # Uniform teacher: kd_pt keeps it uniform, so a uniform student has zero loss.
    assert float(labelled) == pytest.approx(0.0, abs=1e-6)


def test_bad_arguments_and_config_round_trip():
    with pytest.raises(ValueError, match="temperature must be a number > 0"):
        TargetDistillation(temperature=0)
    with pytest.raises(ValueError, match="teacher target 'nope' is not registered; known:"):
        TargetDistillation("nope")
    with pytest.raises(ValueError, match="target must be a registered name"):
        TargetDistillation(target=3)
    with pytest.raises(ValueError, match="one teacher output of logits"):
        TargetDistillation().validate_outputs([np.zeros((2, 3))], [np.zeros((2, 3))])
    loss = TargetDistillation("calibrated", temperature=2.0, calibration_temperature=1.5)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(again, TargetDistillation) and again.target.calibration_temperature == 1.5
    z = np.random.default_rng(0).normal(size=(3, CLASSES)).astype("float32")
    assert float(again.compute_loss(z, z[::-1])) == pytest.approx(
        float(loss.compute_loss(z, z[::-1])), rel=1e-7
    )


def test_two_replicas_take_the_step_of_one(mirrored):
    x, y = _batch(seed=5)
    teacher_weights, start = _model(2).get_weights(), _model(1).get_weights()
    devices = [device.name for device in tf.config.list_logical_devices("CPU")][:2]
    results = []
    for strategy in (tf.distribute.OneDeviceStrategy(devices[0]), mirrored):
        with strategy.scope():
            teacher, student = _model(2), _model(1)
            teacher.set_weights(teacher_weights)
            student.set_weights(start)
            distiller = LabelledDistiller(
                teacher,
                student,
                TargetDistillation("kd_pt", temperature=3.0),
                student_loss_weight=0.0,
            )
            distiller.compile(
                optimizer=keras.optimizers.SGD(0.5),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            )
            distiller.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
        results.append(student.get_weights())
    one, two = results
    assert max(np.abs(a - b).max() for a, b in zip(one, start)) > 1e-3
    for a, b in zip(one, two):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
