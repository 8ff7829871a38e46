"""Augmentation replay (FKD): stored views, compressed targets, round trips, the replay pipeline."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfkd
from tfkd.targets import hand_crafted as partial_targets
from tfkd.teacher import replay, replay_batches

SHAPE, CLASSES = (10, 12, 3), 6


def _data(count=20, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (count, *SHAPE), dtype=np.uint8),
        rng.integers(0, CLASSES, count).astype(np.int32),
    )


def _teacher():
    return tfkd.models.build("cnn_small", SHAPE, CLASSES, seed=1)


def _bilinear_crop(image, box):
    """NumPy reference of tf.image.crop_and_resize for one box, output size = image size:
    output (i, j) samples the input at y1 (H - 1) + i (y2 - y1) (H - 1) / (H - 1), likewise x."""
    height, width = image.shape[:2]
    y1, x1, y2, x2 = np.asarray(box, np.float64)
    rows = y1 * (height - 1) + np.arange(height) * (y2 - y1)
    cols = x1 * (width - 1) + np.arange(width) * (x2 - x1)
    top = np.clip(np.floor(rows).astype(int), 0, height - 1)
    left = np.clip(np.floor(cols).astype(int), 0, width - 1)
    bottom, right = np.minimum(top + 1, height - 1), np.minimum(left + 1, width - 1)
    dy, dx = (rows - top)[:, None, None], (cols - left)[None, :, None]
    upper = image[top][:, left] * (1 - dx) + image[top][:, right] * dx
    lower = image[bottom][:, left] * (1 - dx) + image[bottom][:, right] * dx
    return upper * (1 - dy) + lower * dy


def _reference_view(x, storage, example, view):
    image = x[example].astype(np.float64) / 255.0
    if storage.partners is not None:
        weight = float(storage.mix_weights[example, view])
        partner = x[storage.partners[example, view]].astype(np.float64) / 255.0
        image = weight * image + (1 - weight) * partner
    image = _bilinear_crop(image, storage.boxes[example, view].astype(np.float32))
    return image[:, ::-1] if storage.flips[example, view] else image


def test_storage_round_trips_exactly_and_reports_its_size(tmp_path):
    x, _ = _data()
    storage = replay.build_replay(
        _teacher(), x, views=3, topk=2, mixup_alpha=1.0, batch_size=8, seed=4, verbose=0
    )
    path = str(tmp_path / "replay.npz")
    storage.save(path)
    loaded = replay.ReplayStorage.load(path)
    for name in replay.ReplayStorage.ARRAYS:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(storage, name))
        assert getattr(loaded, name).dtype == getattr(storage, name).dtype
    assert (loaded.num_classes, loaded.temperature, loaded.settings) == (
        storage.num_classes,
        storage.temperature,
        storage.settings,
    )
    # Per view: box 4 x f16, flip 1, partner int32 4, weight f16 2, k uint8 + k f16 = 21 bytes.
    assert storage.bytes_per_view == 8 + 1 + 4 + 2 + 2 * (1 + 2)
    assert storage.bytes_per_image == 3 * storage.bytes_per_view
    without_mixup = replay.build_replay(_teacher(), x, views=2, topk=2, verbose=0)
    assert without_mixup.partners is None and without_mixup.bytes_per_view == 8 + 1 + 6
    # Views differ from each other and the seed reproduces them.
    again = replay.build_replay(
        _teacher(), x, views=3, topk=2, mixup_alpha=1.0, batch_size=5, seed=4, verbose=0
    )
    np.testing.assert_array_equal(again.boxes, storage.boxes)
    np.testing.assert_array_equal(again.topk_indices, storage.topk_indices)
    assert not np.array_equal(storage.boxes[:, 0], storage.boxes[:, 1])
    assert np.all(storage.partners != np.arange(len(x))[:, None])
    assert np.all((storage.mix_weights >= 0.5) & (storage.mix_weights <= 1))


@pytest.mark.parametrize(
    "mixup_alpha, probability_dtype, tolerance",
    [(None, "float32", 1e-6), (0.5, "float32", 1e-6), (1.0, "float16", 2e-3)],
)
def test_replayed_views_are_the_stored_ones_and_targets_are_kd_topk(
    mixup_alpha, probability_dtype, tolerance
):
    x, y = _data()
    teacher = _teacher()
    temperature, topk = 2.0, 3
    storage = replay.build_replay(
        teacher,
        x,
        views=4,
        topk=topk,
        temperature=temperature,
        mixup_alpha=mixup_alpha,
        batch_size=8,
        seed=1,
        probability_dtype=probability_dtype,
        verbose=0,
    )
    dataset = replay_batches.replay_dataset(
        storage, x, y, batch_size=7, seed=3, return_view_ids=True
    )
    seen_views = set()
    for views, targets in dataset:
        examples = targets["example_index"].numpy()
        chosen = targets["view_index"].numpy()
        seen_views.update(chosen.tolist())
        np.testing.assert_array_equal(targets["labels"], y[examples])
        for row, (example, view) in enumerate(zip(examples, chosen)):
            np.testing.assert_allclose(
                views[row], _reference_view(x, storage, example, view), atol=2e-5
            )
        # The teacher on the replayed view gives back the stored compressed distribution.
        expected = partial_targets.kd_topk(
            tf.nn.softmax(teacher(views, training=False) / temperature), topk
        ).numpy()
        carried = tf.nn.softmax(targets["teacher_logits"] / temperature).numpy()
        np.testing.assert_allclose(carried, expected, atol=tolerance, rtol=tolerance)
        np.testing.assert_allclose(carried, storage.targets(examples, chosen), atol=1e-6)
    assert seen_views == set(range(4))


def test_targets_keep_the_top_k_and_spread_the_rest_uniformly():
    probabilities = np.array([[0.5, 0.3, 0.2]], np.float32)
    target = replay.expand_targets(np.array([[2, 0]]), probabilities[:, [2, 0]], 5).numpy()
    np.testing.assert_allclose(target, [[0.5, 0.1, 0.2, 0.1, 0.1]], rtol=1e-6)
    # A stored probability that rounded to 0 still counts as kept.
    zero = replay.expand_targets(np.array([[1, 3]]), np.array([[1.0, 0.0]]), 4).numpy()
    np.testing.assert_allclose(zero, [[0.0, 1.0, 0.0, 0.0]])


def test_replay_trains_a_distiller_without_running_the_teacher():
    x, y = _data()
    teacher = _teacher()
    storage = replay.build_replay(teacher, x, views=2, topk=3, temperature=4.0, verbose=0)

    class Refuses(keras.Model):
        """Stands for the teacher during training: any call fails the test."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def call(self, inputs, training=False):
            raise AssertionError("the teacher ran during replay training")

        def compute_output_shape(self, input_shape):
            return (input_shape[0], CLASSES)

    distiller = tfkd.Distiller(
        tfkd.models.build("cnn_small", SHAPE, CLASSES, seed=2),
        teacher,
        temperature=storage.temperature,
    )
    distiller.teacher = Refuses(teacher)
    distiller.compile(optimizer="sgd")
    history = distiller.fit(
        replay_batches.replay_dataset(storage, x, y, batch_size=8), epochs=2, verbose=0
    ).history
    assert np.all(np.isfinite(history["loss"])) and history["distillation_loss"][0] > 0


def test_bad_arguments_are_named():
    x, y = _data(4)
    teacher = _teacher()
    with pytest.raises(ValueError, match="topk must be an integer in \\[1, 6\\]"):
        replay.build_replay(teacher, x, topk=7, verbose=0)
    with pytest.raises(ValueError, match="x must be images"):
        replay.build_replay(teacher, x.reshape(4, -1), verbose=0)
    with pytest.raises(ValueError, match="probability_dtype"):
        replay.build_replay(teacher, x, probability_dtype="int8", verbose=0)
    storage = replay.build_replay(teacher, x, views=1, topk=1, verbose=0)
    with pytest.raises(ValueError, match="disagree on the number of images"):
        replay_batches.replay_dataset(storage, x[:2], y[:2], 2)


def test_epoch_stream_replays_stored_views_and_resumes_exactly():
    x, y = _data()
    storage = replay.build_replay(_teacher(), x, views=3, topk=2, temperature=2.0, verbose=0)
    orders = tfkd.data.pipeline.shuffled_orders(len(y), 3, seed=5)
    whole, steps = replay_batches.replay_epochs_dataset(storage, x, y, orders, 8, seed=5)
    assert steps == 3
    batches = list(whole.as_numpy_iterator())
    assert len(batches) == 3 * steps
    chosen = replay_batches.epoch_views(len(y), 3, 3, seed=5)
    for epoch in range(3):
        for step in range(steps):
            views, targets = batches[epoch * steps + step]
            examples = orders[epoch][step * 8 : (step + 1) * 8]
            np.testing.assert_array_equal(targets["labels"], y[examples])
            for row, example in enumerate(examples):
                view = chosen[epoch, example]
                # The student sees exactly the stored view, and its stored target.
                np.testing.assert_allclose(
                    views[row], _reference_view(x, storage, example, view), atol=2e-5
                )
            carried = tf.nn.softmax(targets["teacher_logits"] / 2.0).numpy()
            np.testing.assert_allclose(
                carried, storage.targets(examples, chosen[epoch, examples]), atol=1e-6
            )
    assert len(set(chosen.ravel().tolist())) == 3
    resumed, _ = replay_batches.replay_epochs_dataset(
        storage, x, y, orders[1:], 8, seed=5, first_epoch=1
    )
    for (va, ta), (vb, tb) in zip(batches[steps:], resumed.as_numpy_iterator(), strict=True):
        np.testing.assert_array_equal(va, vb)
        np.testing.assert_array_equal(ta["teacher_logits"], tb["teacher_logits"])


def test_cached_replay_is_built_once_and_a_broken_entry_is_rebuilt(tmp_path):
    x, _ = _data(8)
    teacher = _teacher()
    first, path, built = replay.cached_replay(
        teacher, x, "k" * 32, str(tmp_path), views=2, topk=2, verbose=0
    )
    again, same_path, built_again = replay.cached_replay(
        teacher, x, "k" * 32, str(tmp_path), views=2, topk=2, verbose=0
    )
    assert built and not built_again and path == same_path
    np.testing.assert_array_equal(again.topk_probabilities, first.topk_probabilities)
    with open(path, "r+b") as handle:
        handle.truncate(100)
    _, _, rebuilt = replay.cached_replay(
        teacher, x, "k" * 32, str(tmp_path), views=2, topk=2, verbose=0
    )
    assert rebuilt and os.listdir(tmp_path) == [os.path.basename(path)]
