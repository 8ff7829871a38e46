"""Teaching modes (fixed, independent, consistent, function matching), in-graph augmentation,
out-of-domain distillation and the bin/distill flags for them."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from cli_helpers import run_distill

import tfkd
from tfkd import augment, data
from tfkd.teacher import fixed, teaching

# ---- augmentation -------------------------------------------------------------------------------


def _seed(value):
    return tf.constant([value, 7], tf.int64)


def test_crop_boxes_cover_the_asked_area_and_aspect_ratio():
    # On a 10 x 20 image these ranges never need clipping: h = sqrt(2 s / r) <= sqrt(0.8).
    height, width, scale, ratio = 10, 20, (0.1, 0.4), (1.0, 2.0)
    boxes = augment.crop_boxes(4000, _seed(1), height, width, scale, ratio).numpy()
    y1, x1, y2, x2 = boxes.T
    assert np.all((boxes >= 0) & (boxes <= 1 + 1e-6)) and np.all(y2 > y1) and np.all(x2 > x1)
    area = (y2 - y1) * (x2 - x1)
    aspect = ((x2 - x1) * width) / ((y2 - y1) * height)
    assert np.all(area >= scale[0] - 1e-5) and np.all(area <= scale[1] + 1e-5)
    assert area.mean() == pytest.approx(0.25, abs=0.01)  # uniform area fraction
    assert np.all(aspect >= ratio[0] - 1e-4) and np.all(aspect <= ratio[1] + 1e-4)
    # Log-uniform aspect ratio: mean log r = (log 1 + log 2) / 2.
    assert np.log(aspect).mean() == pytest.approx(np.log(2) / 2, abs=0.02)
    # Corners uniform over the positions that keep the window inside the image.
    assert (y1 / (1 - (y2 - y1))).mean() == pytest.approx(0.5, abs=0.03)
    # Windows too tall for the image are clipped to it, never beyond.
    tall = augment.crop_boxes(500, _seed(2), height, width, (0.9, 1.0), (0.2, 0.3)).numpy()
    assert np.all((tall >= 0) & (tall <= 1 + 1e-6))
    np.testing.assert_allclose(tall[:, 2] - tall[:, 0], 1.0, atol=1e-6)


def test_random_resized_crop_samples_the_box_bilinearly():
    """A linear ramp f(r, c) = r + 100 c is reproduced exactly by bilinear interpolation, so
    output pixel (i, j) must equal the ramp at the box position it samples."""
    height, width = 6, 9
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    ramp = (rows + 100.0 * cols).astype(np.float32)[None, :, :, None].repeat(3, axis=0)
    seed = _seed(3)
    out = augment.random_resized_crop(tf.constant(ramp), seed, (0.2, 0.9)).numpy()
    boxes = augment.crop_boxes(3, seed, height, width, (0.2, 0.9)).numpy()
    for k, (y1, x1, y2, x2) in enumerate(boxes):
        r = (y1 + np.arange(height)[:, None] * (y2 - y1) / (height - 1)) * (height - 1)
        c = (x1 + np.arange(width)[None, :] * (x2 - x1) / (width - 1)) * (width - 1)
        np.testing.assert_allclose(out[k, :, :, 0], r + 100.0 * c, atol=1e-3)
    # The whole (square) image at aspect ratio 1 is the identity.
    square = ramp[:, :, :height]
    full = augment.random_resized_crop(tf.constant(square), seed, (1.0, 1.0), (1.0, 1.0))
    np.testing.assert_array_equal(full.numpy(), square)


def test_flip_returns_each_image_or_its_mirror_and_both_happen():
    images = np.random.default_rng(0).normal(size=(64, 5, 7, 2)).astype(np.float32)
    out = augment.random_flip(tf.constant(images), _seed(4)).numpy()
    same = np.all(out == images, axis=(1, 2, 3))
    mirrored = np.all(out == images[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(same | mirrored) and 10 < mirrored.sum() < 54


@pytest.mark.parametrize("alpha", [0.4, 1.0, 3.0])
def test_beta_samples_have_the_beta_moments(alpha):
    samples = augment.sample_beta([40000], _seed(5), alpha).numpy()
    assert samples.min() >= 0 and samples.max() <= 1
    # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)).
    assert samples.mean() == pytest.approx(0.5, abs=0.01)
    assert samples.var() == pytest.approx(1 / (4 * (2 * alpha + 1)), rel=0.05)


@pytest.mark.parametrize("batch", [2, 3, 8, 65])
def test_mixup_matches_the_equation_and_partners_differ(batch):
    x = np.random.default_rng(batch).normal(size=(batch, 4, 3, 1)).astype(np.float32)
    pairs_used_twice = []
    partners_seen = set()
    for value in range(20):
        mixed, weight, partner = (
            t.numpy() for t in augment.mixup(tf.constant(x), _seed(value), alpha=0.5)
        )
        assert np.all((weight >= 0.5) & (weight <= 1.0))
        assert sorted(partner) == list(range(batch)) and np.all(partner != np.arange(batch))
        w = weight[:, None, None, None]
        np.testing.assert_allclose(mixed, w * x + (1 - w) * x[partner], rtol=1e-6, atol=1e-6)
        pairs_used_twice.append(np.mean(partner[partner] == np.arange(batch)))
        partners_seen.add(tuple(partner))
    if batch > 3:
        # A reversed batch pairs every example with the one that is paired with it.
        assert np.mean(pairs_used_twice) < 0.5 and len(partners_seen) > 10
    roll = augment.mixup_partners(batch, _seed(0), "roll").numpy()
    np.testing.assert_array_equal(roll, (np.arange(batch) + 1) % batch)


def test_mixup_weight_distribution_is_the_folded_beta():
    _, weight, _ = augment.mixup(tf.zeros([20000, 2]), _seed(9), alpha=1.0)
    # Beta(1, 1) is uniform; folded onto [1/2, 1] it is uniform there: mean 3/4, var 1/48.
    assert weight.numpy().mean() == pytest.approx(0.75, abs=0.005)
    assert weight.numpy().var() == pytest.approx(1 / 48, rel=0.05)


def test_bad_teaching_arguments_name_the_argument():
    for kwargs, name in (
        ({"mode": "nope"}, "teaching"),
        ({"mode": "consistent", "mixup_alpha": 0}, "mixup_alpha"),
        ({"mode": "consistent", "crop_scale": (0.5, 0.2)}, "crop_scale"),
    ):
        with pytest.raises(ValueError, match=name):
            teaching.Teaching(**kwargs)
    with pytest.raises(ValueError, match="partners"):
        augment.mixup_partners(4, _seed(0), "reverse")


# ---- teaching modes inside a Distiller ----------------------------------------------------------


@keras.saving.register_keras_serializable(package="tfkd_test")
class Recorder(keras.layers.Layer):
    """Identity layer that keeps the last batch it saw and counts its calls."""

    def __init__(self, shape, **kwargs):
        super().__init__(**kwargs)
        self.seen = self.add_weight(shape=shape, initializer="zeros", trainable=False, name="seen")
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False, name="calls")

    def call(self, x):
        self.seen.assign(x)
        self.calls.assign_add(1.0)
        return x


IMAGE, CLASSES, BATCH = (8, 8, 1), 3, 16


def _conv(seed, recorder=None, scale=1.0):
    """A BatchNorm-free conv net, so training and inference mode compute the same function;
    `scale` multiplies the logits (far from uniform, views that differ give a clear KL)."""
    init = keras.initializers.GlorotUniform(seed=seed)
    layers = (
        [keras.Input(IMAGE)]
        + ([recorder] if recorder is not None else [])
        + [
            keras.layers.Conv2D(4, 3, kernel_initializer=init),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(CLASSES, kernel_initializer=init),
            keras.layers.Rescaling(scale),
        ]
    )
    return keras.Sequential(layers)


def _images(n=BATCH, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *IMAGE)).astype(np.uint8), rng.integers(0, CLASSES, n)


def _fit_once(mode, x, y):
    student_recorder, teacher_recorder = Recorder((BATCH, *IMAGE)), Recorder((BATCH, *IMAGE))
    student, teacher = _conv(1, student_recorder), _conv(2, teacher_recorder)
    distiller = tfkd.Distiller(student, teacher, teaching=mode)
    distiller.compile(optimizer=keras.optimizers.SGD(0.01))
    distiller.fit(data.as_dataset(x, y, BATCH, drop_remainder=True), epochs=1, verbose=0)
    return student_recorder.seen.numpy(), teacher_recorder.seen.numpy()


def test_teacher_and_student_see_bit_identical_inputs_only_when_consistent():
    x, y = _images()
    clean = data.to_float(x)
    seen = {
        mode: _fit_once(mode, x, y) for mode in ("consistent", "function_matching", "independent")
    }
    for mode in ("consistent", "function_matching"):
        student_x, teacher_x = seen[mode]
        np.testing.assert_array_equal(student_x, teacher_x)
        assert np.abs(student_x - clean).max() > 0.1  # they were augmented
    student_x, teacher_x = seen["independent"]
    assert np.abs(student_x - clean).max() > 0.1 and np.abs(teacher_x - clean).max() > 0.1
    differs = np.abs(student_x - teacher_x).reshape(BATCH, -1).max(axis=1) > 1e-3
    assert differs.mean() > 0.8
    # Mixup leaves inputs no crop and flip of one image could give: the consistent views are
    # not those of function matching even at the same seed.
    assert np.abs(seen["consistent"][0] - seen["function_matching"][0]).max() > 0.05


def test_evaluation_sees_unaugmented_inputs():
    x, y = _images()
    recorder = Recorder((BATCH, *IMAGE))
    distiller = tfkd.Distiller(_conv(1), _conv(2, recorder), teaching="function_matching")
    distiller.compile(optimizer="sgd")
    distiller.evaluate(data.as_dataset(x, y, BATCH), verbose=0)
    np.testing.assert_array_equal(recorder.seen.numpy(), data.to_float(x))


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_fixed_never_calls_the_teacher_and_learns_from_the_carried_logits():
    x, y = _images(n=48)
    recorder = Recorder((BATCH, *IMAGE))
    teacher, student = _conv(2, recorder), _conv(1)
    logits = fixed.teacher_predictions(teacher, x, batch_size=BATCH)
    assert recorder.calls.numpy() == 3  # the one pass that computes the targets
    expected = teacher.predict(data.to_float(x), batch_size=BATCH, verbose=0)
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    recorder.calls.assign(0.0)
    distiller = tfkd.Distiller(student, teacher, teaching="fixed", temperature=2.0, alpha=0.6)
    distiller.compile(optimizer=keras.optimizers.SGD(0.05))
    carried = fixed.fixed_dataset(x, y, logits, BATCH, shuffle=True, drop_remainder=True)
    history = distiller.fit(carried, epochs=3, verbose=0)
    assert recorder.calls.numpy() == 0
    assert np.isfinite(history.history["loss"]).all()
    # Evaluation on carried targets uses them (made-up logits here), not the teacher.
    made_up = np.random.default_rng(4).normal(size=logits.shape).astype(np.float32) * 3
    result = distiller.evaluate(
        fixed.fixed_dataset(x, y, made_up, BATCH), verbose=0, return_dict=True
    )
    assert recorder.calls.numpy() == 0
    z = student.predict(data.to_float(x), verbose=0)
    p, log_q = _softmax(made_up / 2.0), np.log(_softmax(z / 2.0))
    kl = 4.0 * np.sum(p * (np.log(p) - log_q), axis=-1)
    ce = -np.log(_softmax(z)[np.arange(len(y)), y])
    assert result["distillation_loss"] == pytest.approx(kl.mean(), rel=1e-4)
    assert result["loss"] == pytest.approx((0.4 * ce + 0.6 * kl).mean(), rel=1e-4)
    # Plain (x, y) batches evaluate through the teacher: the counter does count.
    distiller.evaluate(data.as_dataset(x, y, BATCH), verbose=0)
    assert recorder.calls.numpy() == 3


def test_fixed_without_carried_logits_or_on_a_feature_method_is_a_clear_error():
    x, y = _images()
    distiller = tfkd.Distiller(_conv(1), _conv(2), teaching="fixed")
    distiller.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="fixed_dataset"):
        distiller.fit(data.as_dataset(x, y, BATCH), epochs=1, verbose=0)

    class FeatureMethod(tfkd.Distiller):
        def teacher_logits(self, x):
            return super().teacher_logits(x)

    feature = FeatureMethod(_conv(1), _conv(2), teaching="fixed")
    feature.compile(optimizer="sgd")
    carried = fixed.fixed_dataset(x, y, fixed.teacher_predictions(feature.teacher, x), BATCH)
    with pytest.raises(ValueError, match="overrides teacher_logits"):
        feature.fit(carried, epochs=1, verbose=0)


def _twin_step(strategy, mode, x, y):
    """One step with a student that starts as an exact copy of the teacher: identical inputs
    give identical logits, so the distillation loss is 0 exactly when the inputs agree."""
    with strategy.scope():
        teacher, student = _conv(3, scale=30.0), _conv(3, scale=30.0)
        distiller = tfkd.Distiller(student, teacher, teaching=mode, temperature=2.0)
        distiller.compile(optimizer=keras.optimizers.SGD(0.01))
    if mode == "fixed":
        dataset = fixed.fixed_dataset(x, y, fixed.teacher_predictions(teacher, x), len(y))
    else:
        dataset = data.as_dataset(x, y, len(y))
    return distiller.fit(dataset, epochs=1, verbose=0).history


def test_teaching_modes_under_mirrored_strategy(mirrored):
    strategy = mirrored
    x, y = _images(n=32)
    losses = {
        mode: _twin_step(strategy, mode, x, y)["distillation_loss"][0] for mode in teaching.MODES
    }
    assert losses["consistent"] < 1e-5 and losses["function_matching"] < 1e-5
    assert losses["independent"] > 1e-2  # the two views differ on both replicas
    assert losses["fixed"] > 1e-2 and np.isfinite(losses["fixed"])  # crops vs clean targets


def test_every_replica_draws_the_seed_of_the_step(mirrored):
    strategy = mirrored
    mode = teaching.Teaching("consistent", seed=5)
    with strategy.scope():
        distiller = tfkd.Distiller(_conv(1), _conv(2))
        distiller.compile(optimizer="sgd")

    @tf.function
    def seeds():
        return strategy.run(lambda: mode.batch_seed(distiller))

    first, second = (s.numpy() for s in strategy.experimental_local_results(seeds()))
    np.testing.assert_array_equal(first, [5, 0])
    np.testing.assert_array_equal(second, first)
    distiller.optimizer.iterations.assign(1)
    later = strategy.experimental_local_results(seeds())[0].numpy()
    np.testing.assert_array_equal(later, [5, 1])
    np.testing.assert_array_equal(mode.batch_seed(distiller).numpy(), [5, 1])


@pytest.mark.parametrize("global_batch", [8, 9])  # 9 splits unevenly: 5 + 4
def test_replicas_augment_their_rows_of_the_global_batch_as_one_replica_would(
    mirrored, global_batch
):
    strategy = mirrored
    x = data.to_float(_images(n=global_batch)[0])
    seed = tf.constant([3, 11], tf.int64)
    batch = next(
        iter(
            strategy.experimental_distribute_dataset(
                tf.data.Dataset.from_tensor_slices(x).batch(global_batch)
            )
        )
    )
    for mode in teaching.MODES:
        mode_teaching = teaching.Teaching(mode)

        @tf.function
        def views(local_x):
            return strategy.run(
                lambda v: mode_teaching.augment_replica_batch(v, seed), args=(local_x,)
            )

        replica_views = [strategy.experimental_local_results(v) for v in views(batch)]
        assert [len(part) for part in replica_views[0]] == [
            (global_batch + 1) // 2,
            global_batch // 2,
        ]
        student_x, teacher_x = (
            np.concatenate([part.numpy() for part in view]) for view in replica_views
        )
        parameters = mode_teaching.parameters(global_batch, seed, IMAGE[:2])
        expected_student, expected_teacher = mode_teaching.apply(tf.constant(x), parameters)
        np.testing.assert_array_equal(student_x, expected_student.numpy())
        np.testing.assert_array_equal(teacher_x, expected_teacher.numpy())
        assert np.abs(student_x - x).max() > 0.1, mode  # augmented
        if mode == "function_matching":
            # Some example is mixed with a partner held by the other replica.
            partner = parameters["mixup_partner"].numpy()
            first_half = np.arange(global_batch) < (global_batch + 1) // 2
            assert np.any(first_half != first_half[partner])


# ---- explicit augmentation parameters ------------------------------------------------------------


def test_apply_follows_given_parameters():
    rng = np.random.default_rng(6)
    x = rng.uniform(size=(3, 4, 4, 1)).astype(np.float32)
    full = np.tile(np.array([[0.0, 0.0, 1.0, 1.0]], np.float32), (3, 1))
    given = {
        "student_crop_box": full,
        "student_flip": np.array([False, True, False]),
        "teacher_crop_box": np.array(
            [[0, 0, 1, 1], [0, 0, 1, 1], [0.0, 0.0, 1 / 3, 1 / 3]], np.float32
        ),
        "teacher_flip": np.array([True, False, False]),
        "mixup_partner": np.array([2, 0, 1], np.int32),
        "mixup_weight": np.array([0.5, 0.75, 1.0], np.float32),
    }
    given = {name: tf.constant(value) for name, value in given.items()}
    flipped = np.where(np.array([False, True, False])[:, None, None, None], x[:, :, ::-1], x)
    student_x, teacher_x = teaching.Teaching("independent").apply(tf.constant(x), given)
    np.testing.assert_allclose(student_x, flipped, atol=1e-6)
    np.testing.assert_allclose(teacher_x[0], x[0, :, ::-1], atol=1e-6)
    np.testing.assert_allclose(teacher_x[1], x[1], atol=1e-6)
    # The top-left 1/3 x 1/3 window of a 4 x 4 image spans pixels 0..1: bilinear in between.
    grid = np.arange(4) / 3.0
    rows = [np.interp(grid, [0, 1], x[2, r, :2, 0]) for r in range(2)]
    expected = np.array(
        [np.interp(g, [0, 1], [rows[0][c], rows[1][c]]) for g in grid for c in range(4)]
    ).reshape(4, 4)
    np.testing.assert_allclose(teacher_x[2, :, :, 0], expected, atol=1e-5)
    mixed, mixed_teacher = teaching.Teaching("function_matching").apply(tf.constant(x), given)
    w = np.array([0.5, 0.75, 1.0])[:, None, None, None]
    np.testing.assert_allclose(mixed, w * flipped + (1 - w) * flipped[[2, 0, 1]], atol=1e-6)
    np.testing.assert_array_equal(mixed, mixed_teacher)
    fixed_student, fixed_teacher = teaching.Teaching("fixed").apply(tf.constant(x), given)
    np.testing.assert_allclose(fixed_student, flipped, atol=1e-6)
    np.testing.assert_array_equal(fixed_teacher, x)  # what the carried logits were computed on


def test_parameters_name_what_each_mode_draws_and_vectors_get_mixup_only():
    seed = tf.constant([1, 2], tf.int64)
    keys = {
        mode: set(teaching.Teaching(mode).parameters(6, seed, (8, 8))) for mode in teaching.MODES
    }
    view = {"student_crop_box", "student_flip"}
    assert keys["fixed"] == keys["consistent"] == view
    assert keys["independent"] == view | {"teacher_crop_box", "teacher_flip"}
    assert keys["function_matching"] == view | {"mixup_partner", "mixup_weight"}
    vectors = teaching.Teaching("function_matching").parameters(6, seed)
    assert set(vectors) == {"mixup_partner", "mixup_weight"}
    x = np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32)
    mixed, _ = teaching.Teaching("function_matching").apply(tf.constant(x), vectors)
    w, partner = vectors["mixup_weight"].numpy()[:, None], vectors["mixup_partner"].numpy()
    np.testing.assert_allclose(mixed, w * x + (1 - w) * x[partner], atol=1e-6)
    no_flip = teaching.Teaching("consistent", flip=False).parameters(6, seed, (8, 8))
    assert not no_flip["student_flip"].numpy().any()


@pytest.mark.parametrize("mode", ["independent", "function_matching"])
def test_parameters_replay_what_training_fed_the_models(mode):
    """Training draws `parameters(global batch, (seed, step))`: applied again, they give the
    student and teacher inputs of that step bit for bit."""
    x, y = _images()
    student_x, teacher_x = _fit_once(mode, x, y)  # one step: optimizer step 0, seed 0
    mode_teaching = teaching.Teaching(mode)
    parameters = mode_teaching.parameters(BATCH, tf.constant([0, 0], tf.int64), IMAGE[:2])
    replayed_student, replayed_teacher = mode_teaching.apply(
        tf.constant(data.to_float(x)), parameters
    )
    np.testing.assert_array_equal(student_x, replayed_student.numpy())
    np.testing.assert_array_equal(teacher_x, replayed_teacher.numpy())


def test_match_input_shape_resizes_and_converts_channels():
    rgb = np.zeros((2, 10, 10, 3), np.uint8)
    rgb[0] = (200, 100, 50)
    rgb[1, :, :5] = 255
    grey = fixed.match_input_shape(rgb, (5, 5, 1))
    assert grey.shape == (2, 5, 5, 1) and grey.dtype == np.uint8
    luma = 0.2989 * 200 + 0.5870 * 100 + 0.1140 * 50
    assert np.all(np.abs(grey[0].astype(float) - luma) <= 1)
    assert grey[1, :, :2].min() >= 254 and grey[1, :, 3:].max() <= 1
    back = fixed.match_input_shape(grey, (5, 5, 3))
    assert back.shape == (2, 5, 5, 3) and np.all(back[..., 0] == back[..., 2])
    with pytest.raises(ValueError, match="--distill_dataset"):
        fixed.match_input_shape(np.zeros((2, 12), np.float32), (5, 5, 1))
    with pytest.raises(ValueError, match="channels"):
        fixed.match_input_shape(np.zeros((2, 4, 4, 2), np.uint8), (4, 4, 3))


# ---- bin/distill --------------------------------------------------------------------------------


def _npz(root, shape, classes, n_train, n_test, seed):
    """A data set whose classes differ in mean brightness, learnable in a few steps."""
    rng = np.random.default_rng(seed)
    root.mkdir()
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, classes, n)
        base = (labels * (200 // max(classes - 1, 1)))[:, None, None, None]
        x = np.clip(base + rng.normal(0, 20, (n, *shape)), 0, 255).astype(np.uint8)
        np.savez(root / f"{split}.npz", x=x, y=labels)
    return f"npz:{root}"


@pytest.fixture(scope="module")
def image_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("teaching")
    return {
        "a": _npz(root / "a", (8, 8, 1), 3, 300, 90, seed=0),
        "b": _npz(root / "b", (10, 10, 3), 7, 170, 20, seed=1),
        "root": root,
    }


def _cli(args, out):
    return run_distill(
        [
            "--teacher=cnn_small",
            "--teacher_epochs=2",
            "--student=cnn_small",
            "--epochs=2",
            "--batch_size=32",
            "--optimizer=adam",
            "--learning_rate=0.01",
            "--verbose=0",
            "--export=keras",
            "--validation_fraction=0.2",
            f"--output_dir={out}",
            *args,
        ]
    )


def test_cli_function_matching_is_kl_only_unless_alpha_is_given(image_sets, tmp_path):
    results = _cli(
        [
            f"--dataset={image_sets['a']}",
            "--teaching=function_matching",
            "--test_every=1",
            "--mixup_alpha=0.4",
        ],
        tmp_path / "fm",
    )
    assert results["teaching"]["teaching"] == "function_matching"
    assert results["teaching"]["options"]["alpha"] == 1.0
    assert results["teaching"]["augmentation"]["mixup_alpha"] == 0.4
    rows = (tmp_path / "fm" / "history.csv").read_text().splitlines()
    column = rows[0].split(",").index("test_accuracy")
    recorded = [float(row.split(",")[column]) for row in rows[1:]]
    assert recorded[-1] == pytest.approx(results["student"]["accuracy"])
    agreement = [
        float(row.split(",")[rows[0].split(",").index("test_agreement")]) for row in rows[1:]
    ]
    assert 0 <= agreement[-1] <= 1
    given = _cli(
        [
            f"--dataset={image_sets['a']}",
            "--teaching=function_matching",
            "--alpha=0.5",
            f"--teacher={tmp_path / 'fm' / 'teacher.keras'}",
        ],
        tmp_path / "given",
    )
    assert given["teaching"]["options"]["alpha"] == 0.5
    fixed = _cli(
        [
            f"--dataset={image_sets['a']}",
            "--teaching=fixed",
            f"--teacher={tmp_path / 'fm' / 'teacher.keras'}",
        ],
        tmp_path / "fixed",
    )
    assert fixed["teaching"]["options"]["alpha"] == 0.9  # labels are used: default alpha
    assert 0 <= fixed["student"]["accuracy"] <= 1


def test_cli_out_of_domain_learns_from_b_and_evaluates_on_a(image_sets, tmp_path):
    out = tmp_path / "ood"
    results = _cli(
        [
            f"--dataset={image_sets['a']}",
            f"--distill_dataset={image_sets['b']}",
            "--teaching=consistent",
        ],
        out,
    )
    assert results["teaching"]["distill_dataset"] == image_sets["b"]
    assert results["teaching"]["distill_examples"] == 170  # all of B's train images
    assert results["teaching"]["options"]["alpha"] == 1.0  # B's labels mean nothing to A
    bundle_a = data.load(data.DataConfig(image_sets["a"], validation_fraction=0.2))
    student = keras.saving.load_model(out / "student.keras")
    accuracy = np.mean(
        np.argmax(student.predict(data.to_float(bundle_a.test[0]), verbose=0), -1)
        == bundle_a.test[1]
    )
    assert results["student"]["accuracy"] == pytest.approx(accuracy)
    assert json.loads((out / "results.json").read_text())["teacher"]["accuracy"] == pytest.approx(
        results["teacher"]["accuracy"]
    )
    header = (out / "history.csv").read_text().splitlines()[0].split(",")
    assert "val_accuracy" in header  # validated on A's validation split


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--teaching=consistent", "--augment"], "--augment"),
        (["--distill_dataset=synthetic", "--synthetic_size=200"], "--distill_dataset"),
        (["--test_every=-1"], "--test_every"),
    ],
)
def test_cli_bad_teaching_flags_are_one_clear_error(image_sets, tmp_path, args, fragment):
    with pytest.raises(ValueError, match=fragment):
        _cli([f"--dataset={image_sets['a']}", *args], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_test_monitor_measures_accuracy_agreement_and_kl_against_numpy():
    from tfkd.callbacks import TestMonitor

    x, y = _images(n=40)
    student, teacher = _conv(1, scale=5.0), _conv(2, scale=5.0)
    values = TestMonitor(student, (x, y), every=1, teacher=teacher).measure()
    z_s = student.predict(data.to_float(x), verbose=0)
    z_t = teacher.predict(data.to_float(x), verbose=0)
    p, q = _softmax(z_t), _softmax(z_s)
    assert values["test_accuracy"] == pytest.approx(np.mean(z_s.argmax(-1) == y))
    assert values["test_agreement"] == pytest.approx(np.mean(z_s.argmax(-1) == z_t.argmax(-1)))
    kl = np.sum(p * (np.log(p) - np.log(q)), axis=-1).mean()
    assert values["test_teacher_kl"] == pytest.approx(kl, rel=1e-4)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_long_cosine_schedule_with_warmup_follows_the_formula(optimizer):
    """Patience needs long schedules: 1000 epochs x 40 steps with a 10-epoch linear warm-up."""
    from tfkd import training

    config = training.TrainConfig(
        epochs=1000, optimizer=optimizer, learning_rate=0.1, lr_schedule="cosine", warmup_epochs=10
    )
    steps, warmup, peak = 40, 400, 0.1
    total = 1000 * steps
    assert type(training.make_optimizer(config, steps)).__name__.lower() == optimizer

    def expected(step):
        if step < warmup:
            return peak * step / warmup
        return peak * 0.5 * (1 + np.cos(np.pi * (step - warmup) / (total - warmup)))

    rate = training.learning_rate(config, steps)
    for step in (0, 200, 400, 1000, 20000, 39000, total - 1, total):
        assert float(rate(step)) == pytest.approx(expected(step), rel=1e-4, abs=1e-7)
