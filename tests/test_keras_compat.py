"""Every distiller with the models and callbacks a Keras user brings: functional, Sequential and
subclassed students and teachers; BackupAndRestore, ModelCheckpoint, EarlyStopping,
TensorBoard, CSVLogger, LearningRateScheduler; validation_split, NumPy inputs, sample_weight;
and the guard that stops training on a non-finite loss."""

import csv
import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import config as framework_config

import tfkd
from tfkd import callbacks, methods
from tfkd.data import DataBundle
from tfkd.distillers.selective_reliance import SelectiveRelianceDistiller

FEATURES, CLASSES, EXAMPLES = 8, 3, 32
KINDS = ("functional", "sequential", "subclassed")


class SubclassedClassifier(keras.Model):
    """A classifier written as users often do: layers in __init__, the graph only in `call`."""

    def __init__(self, classes=CLASSES, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(
            16,
            activation="relu",
            name="features",
            kernel_initializer=keras.initializers.GlorotUniform(seed),
        )
        self.classifier = keras.layers.Dense(
            classes,
            name="classifier",
            kernel_initializer=keras.initializers.GlorotUniform(seed + 1),
        )

    def call(self, inputs, training=False):
        return self.classifier(self.hidden(inputs))


def _model(kind, classes=CLASSES, seed=0, build=True):
    """A [batch, 8] -> [batch, classes] classifier with seeded weights."""
    if kind == "subclassed":
        model = SubclassedClassifier(classes, seed, name=f"subclassed_{seed}")
    else:
        layers = [
            keras.layers.Dense(
                16,
                activation="relu",
                name="features",
                kernel_initializer=keras.initializers.GlorotUniform(seed),
            ),
            keras.layers.Dense(
                classes,
                name="classifier",
                kernel_initializer=keras.initializers.GlorotUniform(seed + 1),
            ),
        ]
        if kind == "functional":
            inputs = keras.Input((FEATURES,))
            return keras.Model(inputs, layers[1](layers[0](inputs)), name=f"functional_{seed}")
        model = keras.Sequential(layers, name=f"sequential_{seed}")  # no Input: built on call
    if build:
        model(np.zeros((1, FEATURES), "float32"))
    return model


def _data(n=EXAMPLES, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, FEATURES)).astype("float32")
    return x, np.argmax(x[:, :CLASSES], axis=1).astype("int32")


def _distiller(
    student_kind="subclassed",
    teacher_kind="subclassed",
    student_seed=0,
    optimizer="adam",
    cls="Distiller",
):
    student, teacher = _model(student_kind, seed=student_seed), _model(teacher_kind, seed=100)
    if cls == "MultiTeacherDistiller":
        distiller = tfkd.MultiTeacherDistiller(
            student, [teacher, _model(teacher_kind, seed=200)], weighting="ebkd"
        )
    else:
        distiller = tfkd.Distiller(student, teacher, temperature=2.0, alpha=0.5)
    distiller.compile(optimizer=optimizer, metrics=["accuracy"])
    return distiller


def _weights(model):
    return [np.array(w) for w in model.get_weights()]


def _assert_same_weights(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.fixture
def deterministic():
    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    yield
    # TensorFlow exports only the switch on; later tests in this process expect it off.
    framework_config.disable_op_determinism()


# ---- any model, any distiller ----------------------------------------------------------------
def _options(name, **overrides):
    return {
        **{option.name: option.default for option in methods.METHODS.get(name).options},
        **overrides,
    }


def _build(method, student, teacher_kind):
    """A distiller for `method` from the registry (or the class itself), teachers of one kind."""
    x, y = _data()
    bundle = DataBundle(
        name="toy",
        train=(x, y),
        validation=(x[:0], y[:0]),
        test=(x, y),
        num_classes=CLASSES,
        input_shape=(FEATURES,),
        superclass_of=np.array([0, 0, 1]),
    )
    teachers = [_model(teacher_kind, seed=100), _model(teacher_kind, seed=200)]
    if method == "Distiller":
        return tfkd.Distiller(student, teachers[0])
    entry = methods.METHODS.get(method)
    options = _options(method, fixed_teacher_weights="1,2")
    if entry.multi_teacher:
        return entry.build(student, teachers, bundle, options)
    return entry.build(student, teachers[0], bundle, options)


METHODS_TO_TRY = (
    "Distiller",
    "kd_pt",
    "kd_sim",
    "kd_topk",
    "kd_rel",
    "ls",
    "kd_sr",
    "aver",
    "ebkd",
    "fixed_mkd",
)
# Eager steps check every pair quickly; the traced cases check that tracing accepts them too
# (the callback tests below trace Distiller and MultiTeacherDistiller with subclassed models).
CASES = [(method, kind, True) for method in METHODS_TO_TRY for kind in KINDS] + [
    ("kd_sr", "subclassed", False),
    ("kd_sim", "sequential", False),
]


@pytest.mark.parametrize("method,kind,run_eagerly", CASES)
def test_every_distiller_takes_a_step_with_every_kind_of_model(method, kind, run_eagerly):
    x, y = _data()
    student = _model(kind, seed=1)
    distiller = _build(method, student, kind)
    assert distiller.built
    distiller.compile(optimizer=keras.optimizers.SGD(0.1), run_eagerly=run_eagerly)
    frozen = [_weights(m) for m in distiller.input_models()[1:]]
    before = _weights(student)
    history = distiller.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    assert all(not np.allclose(a, b) for a, b in zip(before, _weights(student)))
    for teacher, weights in zip(distiller.input_models()[1:], frozen):
        _assert_same_weights(_weights(teacher), weights)


def test_feature_methods_refuse_subclassed_models_with_one_clear_error():
    teachers = [_model("functional", seed=100), _model("functional", seed=200)]
    with pytest.raises(
        ValueError,
        match=r"feature_layer: the student .* has no layer graph .*"
        r"\(a subclassed model",
    ):
        tfkd.MultiTeacherDistiller(_model("subclassed"), teachers, weighting="ca_mkd")
    with pytest.raises(ValueError, match="feature_layer: teacher 1 .* has no layer graph"):
        tfkd.MultiTeacherDistiller(
            _model("functional"), [teachers[0], _model("subclassed")], weighting="ca_mkd"
        )


@pytest.mark.parametrize(
    "student_kind,teacher_kind",
    [
        ("subclassed", "sequential"),
        ("sequential", "subclassed"),
        ("subclassed", "subclassed"),
        ("functional", "subclassed"),
    ],
)
def test_class_count_mismatch_names_student_and_teacher(student_kind, teacher_kind):
    student, teacher = _model(student_kind, seed=1), _model(teacher_kind, classes=4, seed=100)
    message = (
        rf"student and teacher disagree on the number of classes: student "
        rf"'{student.name}' output shape \(None, 3\), teacher '{teacher.name}' output "
        rf"shape \(None, 4\)"
    )
    with pytest.raises(ValueError, match=message):
        tfkd.Distiller(student, teacher)
    with pytest.raises(ValueError, match=message):
        SelectiveRelianceDistiller(student, teacher, max_confidence=0.9)
    with pytest.raises(ValueError, match=r"student and teacher 1 disagree .*\(None, 4\)"):
        tfkd.MultiTeacherDistiller(
            student, [_model(teacher_kind, seed=200), teacher], weighting="aver"
        )


def test_a_student_that_cannot_report_is_checked_at_the_first_step():
    x, y = _data()
    student = _model("subclassed", seed=1, build=False)
    distiller = tfkd.Distiller(student, _model("subclassed", classes=4, seed=100))
    assert not distiller.built
    distiller.compile(optimizer="sgd")
    with pytest.raises(
        ValueError,
        match=r"student and teacher disagree on the number of "
        r"classes: .*\(None, 3\).*\(None, 4\)",
    ):
        distiller.fit(x, y, batch_size=16, epochs=1, verbose=0)

    student = _model("subclassed", seed=1, build=False)
    teachers = [_model("sequential", seed=100), _model("sequential", classes=4, seed=200)]
    distiller = tfkd.MultiTeacherDistiller(student, teachers, weighting="aver")
    distiller.compile(optimizer="sgd")
    with pytest.raises(ValueError, match=r"teacher 0 and teacher 1 disagree"):
        distiller.fit(x, y, batch_size=16, epochs=1, verbose=0)


def test_a_distiller_is_built_once_its_models_are():
    x, y = _data()
    student = _model("subclassed", seed=1, build=False)
    distiller = tfkd.Distiller(student, _model("subclassed", seed=100))
    assert not distiller.built
    student(x[:1])
    assert distiller.built  # nothing was done to the distiller itself

    distiller = tfkd.Distiller(
        _model("subclassed", seed=1, build=False), _model("subclassed", seed=100, build=False)
    )
    distiller.build((None, FEATURES))  # what fit does under a distribution strategy
    assert distiller.built and distiller.student.built and distiller.teacher.built
    distiller.compile(optimizer="sgd")
    assert np.isfinite(distiller.fit(x, y, epochs=1, verbose=0).history["loss"][0])


def test_unbuilt_models_are_built_and_checked_under_a_strategy(mirrored):
    x, y = _data()
    with mirrored.scope():
        distiller = tfkd.Distiller(
            _model("subclassed", seed=1, build=False), _model("subclassed", seed=100, build=False)
        )
        distiller.compile(optimizer="sgd")
    history = distiller.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    assert distiller.teacher.built and np.isfinite(history["loss"][0])
    with mirrored.scope():
        distiller = tfkd.Distiller(
            _model("subclassed", seed=1, build=False),
            _model("subclassed", classes=4, seed=100, build=False),
        )
        distiller.compile(optimizer="sgd")
    with pytest.raises(
        ValueError,
        match=r"student and teacher disagree .*\(None, 3\).*"
        r"\(None, 4\)",
    ):
        distiller.fit(x, y, batch_size=16, epochs=1, verbose=0)


# ---- standard callbacks ----------------------------------------------------------------------
class _StopAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.stop_epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.stop_epoch:
            raise RuntimeError("interrupted")


class _Recorder(keras.callbacks.Callback):
    """Epochs run and the student's weights at the end of each."""

    def __init__(self):
        super().__init__()
        self.epochs, self.weights = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)
        self.weights.append(_weights(self.model.student))


@pytest.mark.parametrize("cls", ["Distiller", "MultiTeacherDistiller"])
def test_backup_and_restore_resumes_at_the_interrupted_epoch(cls, tmp_path, deterministic):
    x, y = _data()
    fit = {"batch_size": 8, "epochs": 4, "shuffle": False, "verbose": 0}
    uninterrupted = _distiller(cls=cls)
    uninterrupted.fit(x, y, **fit)

    backup = str(tmp_path / "backup")
    interrupted = _distiller(cls=cls)
    with pytest.raises(RuntimeError, match="interrupted"):
        interrupted.fit(
            x, y, callbacks=[keras.callbacks.BackupAndRestore(backup), _StopAt(2)], **fit
        )
    # A fresh process: the same models, the student initialised differently.
    resumed, recorder = _distiller(cls=cls, student_seed=7), _Recorder()
    resumed.fit(x, y, callbacks=[keras.callbacks.BackupAndRestore(backup), recorder], **fit)
    assert recorder.epochs == [2, 3]
    _assert_same_weights(_weights(resumed.student), _weights(uninterrupted.student))
    assert int(resumed.optimizer.iterations) == int(uninterrupted.optimizer.iterations) == 16


def test_weights_only_checkpoint_reloads_into_a_fresh_distiller(tmp_path):
    x, y = _data()
    path = str(tmp_path / "distiller.weights.h5")
    trained = _distiller()
    trained.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        verbose=0,
        callbacks=[keras.callbacks.ModelCheckpoint(path, save_weights_only=True)],
    )
    fresh = _distiller(student_seed=7)
    want = trained.student.predict(x, verbose=0)
    assert not np.allclose(fresh.student.predict(x, verbose=0), want)
    fresh.optimizer.build(fresh.trainable_variables)  # so that its state loads too
    fresh.load_weights(path)
    np.testing.assert_array_equal(fresh.student.predict(x, verbose=0), want)
    assert int(fresh.optimizer.iterations) == int(trained.optimizer.iterations) == 8


def test_early_stopping_restores_the_student_of_the_best_epoch():
    x, y = _data()
    # Validation labels the training pushes away from: the best epoch comes early.
    val_x, val_y = _data(seed=1)
    val_y = (val_y + 1) % CLASSES
    distiller, recorder = _distiller(optimizer=keras.optimizers.Adam(0.05)), _Recorder()
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_student_loss", mode="min", patience=2, restore_best_weights=True
    )
    history = distiller.fit(
        x,
        y,
        validation_data=(val_x, val_y),
        batch_size=8,
        epochs=20,
        verbose=0,
        callbacks=[recorder, stopper],
    ).history
    best = int(np.argmin(history["val_student_loss"]))
    assert len(history["loss"]) < 20 and best < len(history["loss"]) - 1
    _assert_same_weights(_weights(distiller.student), recorder.weights[best])
    assert not np.allclose(recorder.weights[best][0], recorder.weights[-1][0])


def _scalars(folder):
    """{tag: [values by step]} from the TensorBoard event files in `folder`."""
    scalars = {}
    for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars":
                    scalars.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
    return scalars


def _histogram_tags(folder):
    return {
        value.tag
        for path in glob.glob(os.path.join(folder, "events.out.tfevents.*"))
        for event in tf.compat.v1.train.summary_iterator(path)
        for value in event.summary.value
        if value.metadata.plugin_data.plugin_name == "histograms"
    }


def test_tensorboard_logs_every_loss_term_and_the_weights(tmp_path):
    x, y = _data()
    distiller = _distiller(student_kind="functional")
    history = distiller.fit(
        x[:24],
        y[:24],
        validation_data=(x[24:], y[24:]),
        batch_size=8,
        epochs=2,
        verbose=0,
        callbacks=[keras.callbacks.TensorBoard(str(tmp_path), histogram_freq=1, write_graph=True)],
    ).history
    train, validation = _scalars(str(tmp_path / "train")), _scalars(str(tmp_path / "validation"))
    for name in ("loss", "student_loss", "distillation_loss", "accuracy"):
        np.testing.assert_allclose(train[f"epoch_{name}"], history[name], rtol=1e-6)
        np.testing.assert_allclose(validation[f"epoch_{name}"], history[f"val_{name}"], rtol=1e-6)
    assert any("classifier" in tag for tag in _histogram_tags(str(tmp_path / "train")))


def test_csv_logger_writes_what_fit_reports(tmp_path):
    x, y = _data()
    path = str(tmp_path / "history.csv")
    history = (
        _distiller()
        .fit(
            x,
            y,
            validation_split=0.25,
            batch_size=8,
            epochs=2,
            verbose=0,
            callbacks=[keras.callbacks.CSVLogger(path)],
        )
        .history
    )
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in rows] == [0, 1]
    assert set(rows[0]) == {"epoch", *history}
    for name, values in history.items():
        np.testing.assert_allclose([float(row[name]) for row in rows], values, rtol=1e-6)


def test_validation_split_reports_the_held_out_tail():
    x, y = _data()
    distiller = _distiller()
    history = distiller.fit(
        x, y, validation_split=0.25, batch_size=8, epochs=2, shuffle=False, verbose=0
    ).history
    tail = distiller.evaluate(x[24:], y[24:], batch_size=8, verbose=0, return_dict=True)
    head = distiller.evaluate(x[:24], y[:24], batch_size=8, verbose=0, return_dict=True)
    for name in ("loss", "student_loss", "distillation_loss", "accuracy"):
        assert history[f"val_{name}"][-1] == pytest.approx(tail[name], rel=1e-5)
    assert history["val_loss"][-1] != pytest.approx(head["loss"], rel=1e-3)


def test_numpy_arrays_train_exactly_like_a_dataset_of_the_same_batches():
    x, y = _data()
    from_arrays, from_dataset = _distiller(), _distiller()
    from_arrays.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    from_dataset.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), epochs=2, verbose=0)
    _assert_same_weights(_weights(from_arrays.student), _weights(from_dataset.student))


# ---- sample_weight ---------------------------------------------------------------------------
def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(-1, keepdims=True)


def _linear(seed):
    return keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(
                CLASSES,
                kernel_initializer=keras.initializers.GlorotUniform(seed),
                bias_initializer=keras.initializers.RandomNormal(seed=seed + 1),
            ),
        ]
    )


def test_sample_weight_zero_is_the_step_without_those_examples():
    """Keras's convention (`sum_over_batch_size`): the weighted sum is divided by the batch
    size, so zero weights on half the batch give the step of the kept half at half the rate."""
    x, y = _data()
    temperature, alpha, rate = 2.0, 0.6, 0.5
    weights = np.r_[np.ones(16), np.zeros(16)].astype("float32")
    teacher = _model("subclassed", seed=100)

    def one_step(x, y, sample_weight, learning_rate):
        distiller = tfkd.Distiller(_linear(3), teacher, temperature=temperature, alpha=alpha)
        distiller.compile(optimizer=keras.optimizers.SGD(learning_rate))
        distiller.fit(x, y, sample_weight=sample_weight, batch_size=len(x), epochs=1, verbose=0)
        return _weights(distiller.student)

    weighted = one_step(x, y, weights, rate)
    _assert_same_weights(weighted, one_step(x[:16], y[:16], None, rate * 16 / 32))

    # NumPy: d/dz [(1-a) CE + a T^2 KL(p_t^T || p_s^T)] = (1-a)(p_s - onehot) + a T (q_s - p_t).
    kernel, bias = _weights(_linear(3))
    student_logits, teacher_logits = x @ kernel + bias, teacher.predict(x, verbose=0)
    gradient = (1 - alpha) * (
        _softmax(student_logits) - np.eye(CLASSES)[y]
    ) + alpha * temperature * (
        _softmax(student_logits / temperature) - _softmax(teacher_logits / temperature)
    )
    gradient *= weights[:, None] / len(x)
    np.testing.assert_allclose(weighted[0], kernel - rate * x.T @ gradient, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weighted[1], bias - rate * gradient.sum(0), rtol=1e-5, atol=1e-6)


def test_sample_weight_with_alpha_zero_takes_the_step_of_a_plain_keras_model():
    x, y = _data()
    weights = np.random.default_rng(3).random(EXAMPLES).astype("float32")
    distiller = tfkd.Distiller(_linear(3), _model("functional", seed=100), alpha=0.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.5))
    distiller.fit(x, y, sample_weight=weights, batch_size=16, epochs=1, shuffle=False, verbose=0)
    plain = _linear(3)
    plain.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    plain.fit(x, y, sample_weight=weights, batch_size=16, epochs=1, shuffle=False, verbose=0)
    _assert_same_weights(_weights(distiller.student), _weights(plain))


# ---- non-finite loss -------------------------------------------------------------------------
def test_a_nan_loss_stops_training_naming_epoch_and_step():
    x, y = _data()
    x[17] = np.inf  # the third batch of 8; a linear student turns it into a NaN loss
    distiller = tfkd.Distiller(_linear(3), _model("subclassed", seed=100))
    distiller.compile(optimizer="sgd")
    batches = []
    counter = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: batches.append(b))
    with pytest.raises(
        callbacks.NonFiniteLossError,
        match=r"^distill: the loss became nan at epoch 3, step 3; training "
        r"stopped; the last good checkpoint is kept$",
    ):
        distiller.fit(
            x,
            y,
            batch_size=8,
            initial_epoch=2,
            epochs=4,
            shuffle=False,
            verbose=0,
            callbacks=[counter, callbacks.NonFiniteLossGuard()],
        )
    assert batches == [0, 1, 2]
    assert issubclass(callbacks.NonFiniteLossError, ValueError)


def test_a_diverging_student_stops_and_the_last_good_checkpoint_is_kept(tmp_path):
    x, y = _data()
    path = str(tmp_path / "student.weights.h5")
    distiller, recorder = _distiller(optimizer=keras.optimizers.SGD(0.1)), _Recorder()
    explode = keras.callbacks.LearningRateScheduler(lambda epoch, rate: 1e30 if epoch else rate)
    with pytest.raises(
        callbacks.NonFiniteLossError,
        match=r"^teacher: the loss became (nan|inf) at epoch 2, step [1-8]; ",
    ):
        distiller.fit(
            x,
            y,
            batch_size=4,
            epochs=3,
            shuffle=False,
            verbose=0,
            callbacks=[
                explode,
                recorder,
                keras.callbacks.ModelCheckpoint(path, save_weights_only=True),
                callbacks.NonFiniteLossGuard(phase="teacher"),
            ],
        )
    assert recorder.epochs == [0]
    assert not np.isfinite(distiller.student.get_weights()[0]).all()
    distiller.load_weights(path)
    _assert_same_weights(_weights(distiller.student), recorder.weights[0])
