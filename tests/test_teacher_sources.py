"""Every source of teacher outputs gives the same distiller the same batches and the same step.

Online (the teacher runs), the memory and the disk cache and fixed teaching (logits once) on
clean data; replay with k = K (every class kept) and one view per image against consistent
teaching on that same view. For a single-teacher method (kd) and multi-teacher ones (aver, and
ca_mkd with the teachers' feature maps), each one SGD step from the same initial weights; the
online step's loss is checked against a NumPy reference of the equation.
"""

import keras
import numpy as np
import pytest

import tfkd
from tfkd import models
from tfkd.teacher import batch_format, cache, fixed, output_sources, replay, teaching
from tfkd.teacher.fingerprint import cache_key

EXAMPLES, DIM, CLASSES, TEMPERATURE, ALPHA = 12, 6, 3, 2.0, 0.7
ORDER = np.arange(EXAMPLES)[None]  # one epoch, the examples in order, one batch


@pytest.fixture(autouse=True)
def deterministic():
    keras.utils.set_random_seed(0)


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(EXAMPLES, DIM)).astype(np.float32), rng.integers(0, CLASSES, EXAMPLES)


def _mlp(seed):
    return models.build("mlp_small", (DIM,), CLASSES, seed=seed)


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _first_batch(source):
    dataset, steps = source.training_batches(ORDER, 0, EXAMPLES, seed=0)
    assert steps == 1
    return next(iter(dataset))


def _step(build, batch):
    """(loss of one SGD step on `batch`, the student's weights after it)."""
    keras.utils.set_random_seed(0)  # adapters, where the method has them
    distiller = build()
    distiller.compile(optimizer=keras.optimizers.SGD(0.5), run_eagerly=True)
    keras.utils.set_random_seed(1)
    loss = distiller.train_on_batch(*batch, return_dict=True)["loss"]
    return loss, [np.asarray(w) for w in distiller.student.get_weights()]


def _same_steps(results):
    (reference_loss, reference_weights), *others = results.values()
    for name, (loss, weights) in results.items():
        np.testing.assert_allclose(loss, reference_loss, rtol=1e-5, err_msg=name)
        for got, want in zip(weights, reference_weights, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)
    moved = [w for w in reference_weights if w.size]
    initial = _mlp(7).get_weights()
    assert any(not np.allclose(a, b) for a, b in zip(moved, initial))  # a step was taken


def _stored_sources(teachers, x, y, tmp_path, outputs=("logits",)):
    """The memory and disk caches' sources of `teachers` on (x, y)."""
    key = cache_key(teachers, "sources", "train")
    single = len(teachers) == 1
    found = {}
    for mode in ("memory", "disk"):
        store = cache.TeacherCache(mode, tmp_path / "cache" if mode == "disk" else None, 0)
        cached = store.outputs(teachers, x, key, outputs=outputs, feature_dtype="float32")
        carried = output_sources.outputs_of(cached, single)
        found[mode] = output_sources.StoredSource(mode, (x, y), carried, (x, y), carried)
    return found


def test_online_memory_disk_and_fixed_give_kd_the_same_batches_and_step(tmp_path):
    x, y = _data()
    teacher = _mlp(1)
    sources = {"online": output_sources.OnlineSource((x, y))}
    sources.update(_stored_sources([teacher], x, y, tmp_path))
    logits = fixed.teacher_predictions(teacher, x)
    sources["fixed"] = output_sources.StoredSource(
        "fixed", (x, y), {batch_format.TEACHER_LOGITS: logits}
    )
    batches = {name: _first_batch(source) for name, source in sources.items()}
    want_logits = teacher.predict(x, verbose=0)
    for name, (inputs, targets) in batches.items():
        np.testing.assert_array_equal(inputs, x)
        labels, stored = batch_format.unpack(targets)
        np.testing.assert_array_equal(labels, y)
        assert (stored is None) == (name == "online")
        if stored is not None:
            assert len(stored.logits) == 1 and stored.features is None
            np.testing.assert_allclose(stored.logits[0], want_logits, rtol=1e-5, atol=1e-6)

    # Validation batches carry the stored outputs too (the cache's), or none (online).
    sources["online"].validation = (x, y)
    for name in ("online", "memory", "disk"):
        inputs, targets = next(iter(sources[name].validation_batches(EXAMPLES)))
        labels, stored = batch_format.unpack(targets)
        np.testing.assert_array_equal(labels, y)
        assert (stored is None) == (name == "online")
        if stored is not None:
            np.testing.assert_allclose(stored.logits[0], want_logits, rtol=1e-5, atol=1e-6)

    def build(name):
        mode = "fixed" if name == "fixed" else None
        return lambda: tfkd.Distiller(  # kd: Hinton's loss, the base's default
            _mlp(7), teacher, temperature=TEMPERATURE, alpha=ALPHA, teaching=mode
        )

    results = {name: _step(build(name), batch) for name, batch in batches.items()}
    _same_steps(results)
    # The online step's loss from the equation: (1 - a) CE + a T^2 KL(p_t || p_s) at T.
    z_s, z_t = _mlp(7).predict(x, verbose=0), want_logits
    p_t, p_s = _softmax(z_t / TEMPERATURE), _softmax(z_s / TEMPERATURE)
    kl = TEMPERATURE**2 * np.sum(p_t * (np.log(p_t) - np.log(p_s)), axis=-1)
    ce = -np.log(_softmax(z_s)[np.arange(EXAMPLES), y])
    np.testing.assert_allclose(
        results["online"][0], np.mean((1 - ALPHA) * ce + ALPHA * kl), rtol=1e-5
    )


@pytest.mark.parametrize("method", ["aver", "ca_mkd"])
def test_multi_teacher_methods_take_the_same_step_from_every_source(method, tmp_path):
    x, y = _data()
    teachers = [_mlp(1), _mlp(2)]
    features = method == "ca_mkd"
    outputs = ("logits", "features") if features else ("logits",)
    sources = {"online": output_sources.OnlineSource((x, y))}
    sources.update(_stored_sources(teachers, x, y, tmp_path, outputs))
    if not features:
        carried = tuple(fixed.teacher_predictions(t, x) for t in teachers)
        sources["fixed"] = output_sources.StoredSource(
            "fixed", (x, y), {batch_format.TEACHER_LOGITS: carried}
        )
    batches = {name: _first_batch(source) for name, source in sources.items()}
    for name, (_, targets) in batches.items():
        _, stored = batch_format.unpack(targets)
        if stored is None:
            continue
        assert len(stored.logits) == 2 and (stored.features is not None) == features
        for k, teacher in enumerate(teachers):
            want = teacher.predict(x, verbose=0)
            np.testing.assert_allclose(stored.logits[k], want, rtol=1e-5, atol=1e-6)

    def build():
        settings = {"lambda2": 1.0, "skip_features_first_epoch": False} if features else {}
        return tfkd.MultiTeacherDistiller(
            _mlp(7), teachers, weighting=method, temperature=TEMPERATURE, **settings
        )

    results = {name: _step(build, batch) for name, batch in batches.items()}
    _same_steps(results)
    if not features:  # AVER from the equation: CE + mean_k T^2 KL(p_k || p_s)
        z_s = _mlp(7).predict(x, verbose=0)
        p_s = _softmax(z_s / TEMPERATURE)
        kl = [
            TEMPERATURE**2 * np.sum(p * (np.log(p) - np.log(p_s)), axis=-1)
            for p in (_softmax(t.predict(x, verbose=0) / TEMPERATURE) for t in teachers)
        ]
        ce = -np.log(_softmax(z_s)[np.arange(EXAMPLES), y])
        np.testing.assert_allclose(results["online"][0], np.mean(ce + np.mean(kl, 0)), rtol=1e-5)


def test_replay_of_every_class_and_one_view_equals_consistent_teaching_on_that_view():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(8, 8, 8, 3), dtype=np.uint8)
    y = rng.integers(0, CLASSES, len(images))
    keras.utils.set_random_seed(3)
    teacher = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(CLASSES)]
    )
    storage = replay.build_replay(
        teacher, images, views=1, topk=CLASSES, temperature=TEMPERATURE,
        probability_dtype="float32", seed=5, verbose=0,
    )  # fmt: skip
    order = np.arange(len(images))[None]
    source = output_sources.ReplaySource(storage, (images, y), temperature=TEMPERATURE)
    dataset, _ = source.training_batches(order, 0, len(images), seed=0)
    views, targets = next(iter(dataset))
    # The view consistent teaching makes from the stored parameters, for teacher and student.
    consistent = teaching.Teaching("consistent", flip=True)
    parameters = {
        "student_crop_box": storage.boxes[:, 0].astype(np.float32),
        "student_flip": storage.flips[:, 0],
    }
    student_view, teacher_view = consistent.apply(images.astype(np.float32) / 255.0, parameters)
    np.testing.assert_allclose(views, student_view, atol=1e-6)
    np.testing.assert_array_equal(student_view, teacher_view)
    # k = K keeps the whole distribution: the carried logits' softmax at T is the teacher's.
    labels, stored = batch_format.unpack(targets)
    np.testing.assert_array_equal(labels, y)
    z_t = teacher.predict(teacher_view, verbose=0)
    np.testing.assert_allclose(
        _softmax(np.asarray(stored.logits[0]) / TEMPERATURE),
        _softmax(z_t / TEMPERATURE),
        rtol=1e-5,
        atol=1e-7,
    )

    def student():
        keras.utils.set_random_seed(9)
        return keras.Sequential(
            [keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(CLASSES)]
        )

    def build():
        return tfkd.Distiller(student(), teacher, temperature=TEMPERATURE, alpha=ALPHA)

    online = _step(build, (np.asarray(teacher_view), y))
    replayed = _step(build, (views, targets))
    np.testing.assert_allclose(replayed[0], online[0], rtol=1e-5)
    for got, want in zip(replayed[1], online[1], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
