"""Teacher-output cache: keys, disk entries written atomically, batches, cached == online KD."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

import tfkd
from tfkd.teacher import cache, fingerprint, fixed

SHAPE, CLASSES = (12, 12, 3), 4


def _model(seed, name="cnn_small"):
    return tfkd.models.build(name, SHAPE, CLASSES, seed=seed)


def _data(count=48, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (count, *SHAPE), dtype=np.uint8),
        rng.integers(0, CLASSES, count).astype(np.int32),
    )


@pytest.fixture
def deterministic():
    was_enabled = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(0)
    yield
    if not was_enabled:  # no public API turns it off again
        tf_config.disable_op_determinism()


def _key(teachers, **changes):
    identity = dict(
        dataset_id="npz:/data",
        split="train",
        subset=None,
        seed=0,
        preprocessing={"input_scale": 1.0},
    )
    identity.update(changes)
    return fingerprint.cache_key(teachers, **identity)


def test_key_names_teachers_weights_data_split_subset_seed_and_preprocessing():
    teacher = _model(1)
    base = _key([teacher])
    assert base == _key([_model(1)])  # an identical teacher built again
    changed = [
        _key([_model(2)]),
        _key([teacher, teacher]),
        _key([teacher], dataset_id="npz:/other"),
        _key([teacher], split="validation"),
        _key([teacher], subset={"train_limit": 100}),
        _key([teacher], seed=1),
        _key([teacher], preprocessing={"input_scale": 255.0}),
    ]
    assert len({base, *changed}) == len(changed) + 1
    # One weight changed in its last bit changes the key.
    other = _model(1)
    kernel = other.get_layer("classifier").kernel
    bumped = kernel.numpy()
    bumped.view(np.int32)[0, 0] ^= 1
    kernel.assign(bumped)
    assert _key([other]) != base


def test_disk_round_trip_is_exact_and_a_second_call_reads(tmp_path):
    x, _ = _data()
    teachers = [_model(1), _model(2, "resnet8")]
    key = _key(teachers)
    disk = cache.TeacherCache("disk", cache_dir=str(tmp_path), verbose=0)
    built = disk.outputs(teachers, x, key, batch_size=16, outputs=("logits", "features"))
    assert built.built and disk.builds == 1 and built.count == 2
    read = disk.outputs(teachers, x, key, batch_size=16, outputs=("logits", "features"))
    assert not read.built and disk.builds == 1 and read.path == built.path
    memory = cache.TeacherCache("memory", verbose=0).outputs(
        teachers, x, key, batch_size=16, outputs=("logits", "features"), feature_dtype="float32"
    )
    for k, teacher in enumerate(teachers):
        assert isinstance(read.logits[k], np.memmap)
        np.testing.assert_array_equal(read.logits[k], memory.logits[k])
        expected = fixed.teacher_predictions(teacher, x, batch_size=16)
        np.testing.assert_allclose(read.logits[k], expected, rtol=1e-6, atol=1e-6)
        # Features: float16 on disk, within the stated tolerance of the float32 ones.
        assert read.features[k].dtype == np.float16
        exact = memory.features[k]
        error = np.abs(read.features[k].astype(np.float32) - exact).max()
        assert error <= cache.FEATURE_TOLERANCE * np.abs(exact).max()
    assert read.features[1].shape == (len(x), 3, 3, 64)  # resnet8's last map on 12x12


def test_other_teacher_split_subset_or_preprocessing_recomputes(tmp_path):
    x, _ = _data()
    first, second = _model(1), _model(2)
    disk = cache.TeacherCache("disk", cache_dir=str(tmp_path), verbose=0)
    a = disk.outputs([first], x, _key([first]), batch_size=16)
    b = disk.outputs([second], x, _key([second]), batch_size=16)
    assert a.built and b.built and a.path != b.path
    np.testing.assert_allclose(
        b.logits[0], fixed.teacher_predictions(second, x, 16), rtol=1e-6, atol=1e-6
    )
    for changes in ({"split": "test"}, {"subset": 24}, {"preprocessing": "resize"}):
        assert disk.outputs([first], x, _key([first], **changes), batch_size=16).built
    assert disk.builds == 5
    assert not disk.outputs([first], x, _key([first]), batch_size=16).built
    # The same key for other inputs is refused rather than read.
    with pytest.raises(ValueError, match="other inputs"):
        disk.outputs([first], x[::-1], _key([first]), batch_size=16)


def test_half_written_or_stale_entries_are_ignored_and_rebuilt(tmp_path, monkeypatch):
    x, _ = _data()
    teacher = _model(1)
    key = _key([teacher])
    expected = fixed.teacher_predictions(teacher, x, batch_size=16)
    disk = cache.TeacherCache("disk", cache_dir=str(tmp_path), verbose=0)
    path = disk.outputs([teacher], x, key, batch_size=16).path
    # A write that died before its completion marker: garbage chunks, no manifest.
    os.remove(os.path.join(path, cache.MANIFEST))
    np.save(os.path.join(path, "teacher_0_logits.npy"), np.zeros((3, 1), np.float32))
    rebuilt = disk.outputs([teacher], x, key, batch_size=16)
    assert rebuilt.built
    np.testing.assert_allclose(rebuilt.logits[0], expected, rtol=1e-6, atol=1e-6)
    # A manifest naming another key is never read.
    manifest_path = os.path.join(path, cache.MANIFEST)
    with open(manifest_path) as handle:
        manifest = json.load(handle)
    manifest["spec"]["key"] = "0" * 32
    with open(manifest_path, "w") as handle:
        json.dump(manifest, handle)
    assert disk.outputs([teacher], x, key, batch_size=16).built
    # A crash in the middle of a write leaves nothing behind that could be read.
    other = _model(3)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache.TeacherCache, "_compute", crash)
    with pytest.raises(KeyboardInterrupt):
        disk.outputs([other], x, _key([other]), batch_size=16)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(path)]
    assert disk.outputs([other], x, _key([other]), batch_size=16).built


def test_batches_carry_each_example_with_its_own_outputs():
    x, y = _data()
    teachers = [_model(1), _model(2)]
    cached = cache.TeacherCache(verbose=0).outputs(
        teachers, x, _key(teachers), batch_size=16, outputs=("logits", "features")
    )
    dataset = cache.cached_dataset(x, y, cached, batch_size=10, shuffle=True, seed=5)
    plain = tfkd.data.as_dataset(x, y, batch_size=10, shuffle=True, seed=5)
    for (inputs, targets), (plain_inputs, plain_labels) in zip(dataset, plain):
        # Same order as the plain pipeline with the same seed.
        np.testing.assert_array_equal(targets["labels"], plain_labels)
        np.testing.assert_array_equal(inputs, plain_inputs)
        assert inputs.dtype == tf.float32 and len(targets["teacher_logits"]) == 2
        rows = [
            np.flatnonzero(np.all(x == np.round(image * 255).astype(np.uint8), axis=(1, 2, 3)))[0]
            for image in inputs.numpy()
        ]
        for k in range(2):
            np.testing.assert_array_equal(targets["teacher_logits"][k], cached.logits[k][rows])
            np.testing.assert_array_equal(
                targets["teacher_features"][k], cached.features[k][rows].astype(np.float32)
            )
    single = cache.TeacherCache(verbose=0).outputs(teachers[0], x, _key(teachers[:1]))
    _, targets = next(iter(cache.cached_dataset(x, y, single, batch_size=8)))
    assert set(targets) == {"labels", "teacher_logits"} and targets["teacher_logits"].shape == (
        8,
        CLASSES,
    )


def _fit(distiller, dataset, epochs=2):
    distiller.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    history = distiller.fit(dataset, epochs=epochs, verbose=0).history
    return history, [w.copy() for w in distiller.student.get_weights()]


def test_cached_and_online_kd_take_the_same_steps(deterministic):
    x, y = _data()
    teacher = _model(1)
    online = tfkd.Distiller(_model(7), teacher, temperature=4.0, alpha=0.9)
    online_history, online_weights = _fit(
        online, tfkd.data.as_dataset(x, y, batch_size=16, shuffle=True, seed=3)
    )
    cached = cache.TeacherCache(verbose=0).outputs([teacher], x, _key([teacher]), batch_size=16)
    distiller = tfkd.Distiller(_model(7), teacher, temperature=4.0, alpha=0.9)
    history, weights = _fit(
        distiller, cache.cached_dataset(x, y, cached, batch_size=16, shuffle=True, seed=3)
    )
    for name in ("loss", "student_loss", "distillation_loss"):
        np.testing.assert_allclose(history[name], online_history[name], rtol=1e-6)
    for got, want in zip(weights, online_weights):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_cached_multi_teacher_with_features_takes_the_online_steps(deterministic):
    x, y = _data()
    teachers = [_model(1), _model(2)]

    def build():
        keras.utils.set_random_seed(0)  # the adapters' initial weights
        return tfkd.MultiTeacherDistiller(
            _model(7), teachers, weighting="aver", lambda2=1.0, skip_features_first_epoch=False
        )

    online_history, online_weights = _fit(
        build(), tfkd.data.as_dataset(x, y, batch_size=16, shuffle=True, seed=3)
    )
    cached = cache.TeacherCache(verbose=0).outputs(
        teachers,
        x,
        _key(teachers),
        batch_size=16,
        outputs=("logits", "features"),
        feature_dtype="float32",
    )
    history, weights = _fit(build(), cache.cached_dataset(x, y, cached, 16, True, 3))
    for name in ("loss", "distillation_loss", "feature_loss"):
        np.testing.assert_allclose(history[name], online_history[name], rtol=1e-6)
    for got, want in zip(weights, online_weights):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # A cache of logits only cannot feed a distiller that needs features.
    logits_only = cache.TeacherCache(verbose=0).outputs(teachers, x, _key(teachers), 16)
    with pytest.raises(ValueError, match="logits only"):
        _fit(build(), cache.cached_dataset(x, y, logits_only, 16), epochs=1)


def test_bad_arguments_are_named(tmp_path):
    x, y = _data(8)
    teacher = _model(1)
    with pytest.raises(ValueError, match="mode must be one of memory, disk"):
        cache.TeacherCache("ram")
    with pytest.raises(ValueError, match="cache_dir"):
        cache.TeacherCache("disk")
    memory = cache.TeacherCache(verbose=0)
    with pytest.raises(ValueError, match="outputs must be"):
        memory.outputs([teacher], x, "k", outputs=("features",))
    with pytest.raises(ValueError, match="feature_layer: teacher"):
        memory.outputs([teacher], x, "k", outputs=("logits", "features"), feature_layer="nope")
    cached = memory.outputs([teacher], x, "k")
    with pytest.raises(ValueError, match="disagree on the number of examples"):
        cache.cached_dataset(x[:4], y[:4], cached, 2)
    with pytest.raises(ValueError, match="teachers must be"):
        fingerprint.cache_key([], "d", "train")


def test_a_teacher_replaced_between_a_kill_and_a_rerun_rebuilds_the_cache(
    tmp_path, monkeypatch, capsys
):
    """A run stopped in its distillation (SIGINT through the fault hook) and resumed after its
    teacher file was replaced: the cache key changes, the run says so in one line and the
    rebuilt disk entry holds the new teacher's logits."""
    from tfkd import checkpoint, data, experiment
    from tfkd.experiment import RunConfig

    path = str(tmp_path / "teacher.keras")
    tfkd.models.build("mlp_small", (12,), CLASSES, seed=1).save(path)
    flags = [
        "--dataset=synthetic",
        "--synthetic_size=200",
        "--synthetic_dim=12",
        f"--synthetic_classes={CLASSES}",
        "--synthetic_superclasses=2",
        "--student=mlp_small",
        "--epochs=2",
        "--batch_size=64",
        "--verbose=0",
        "--export=keras",
        f"--teacher={path}",
        "--teacher_cache=disk",
        f"--cache_dir={tmp_path / 'cache'}",
        f"--output_dir={tmp_path / 'run'}",
    ]
    config = RunConfig.from_flags(flags)
    monkeypatch.setenv("TFKD_FAULT", "distill:2:INT")  # stop at the second epoch's first step
    with pytest.raises(checkpoint.Preempted):
        experiment.run(config)
    first = [line for line in capsys.readouterr().out.splitlines() if "key " in line]
    old_key = first[0].split("key ")[1].split(")")[0]
    monkeypatch.delenv("TFKD_FAULT")
    replaced = tfkd.models.build("mlp_small", (12,), CLASSES, seed=2)
    replaced.save(path)
    results = experiment.run(config)
    lines = [line for line in capsys.readouterr().out.splitlines() if "changed" in line]
    record = results["teacher_cache"]
    assert record["built"] is True and record["key"] != old_key
    assert lines == [
        "teacher outputs: the teacher changed since the stored outputs were written "
        f"(key {old_key} -> {record['key']}); rebuilding the cache"
    ]
    stored = np.load(os.path.join(record["path"], "teacher_0_logits.npy"))
    train_x = data.load(config.data).train[0]
    np.testing.assert_allclose(stored, replaced.predict(train_x, verbose=0), rtol=1e-5, atol=1e-6)
