"""Teacher scoring, the stratified easy-to-hard order, pacing and the per-epoch pipeline."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfkd import curriculum


def _reference_class_order(correct, confidence, members):
    """Written from the spec: right answers by confidence descending, then wrong ones by
    confidence ascending (confidently wrong last); ties by index."""
    right = sorted((i for i in members if correct[i]), key=lambda i: (-confidence[i], i))
    wrong = sorted((i for i in members if not correct[i]), key=lambda i: (confidence[i], i))
    return right + wrong


def _window_deviation(labels_in_order, max_length=None):
    """max over windows [a, a + w) of |count_c - w p_c|."""
    labels_in_order = np.asarray(labels_in_order)
    classes = labels_in_order.max() + 1
    n = len(labels_in_order)
    share = np.bincount(labels_in_order, minlength=classes) / n
    cumulative = np.vstack([np.zeros(classes), np.cumsum(np.eye(classes)[labels_in_order], 0)])
    worst = 0.0
    for width in range(1, (max_length or n) + 1):
        counts = cumulative[width:] - cumulative[:-width]
        worst = max(worst, np.abs(counts - width * share).max())
    return worst


def test_single_class_order_matches_hand_built_reference():
    correct = np.array([True, False, True, False, True, False, True])
    confidence = np.array([0.6, 0.9, 0.95, 0.5, 0.7, 0.3, 0.6])
    got = curriculum.order(correct, confidence, np.zeros(7, int))
    # Correct: 2 (.95), 4 (.7), 0 (.6), 6 (.6, later index); wrong: 5 (.3), 3 (.5), 1 (.9).
    np.testing.assert_array_equal(got, [2, 4, 0, 6, 5, 3, 1])
    np.testing.assert_array_equal(
        curriculum.order(correct, confidence, np.zeros(7, int), reverse=True), [1, 3, 5, 6, 0, 4, 2]
    )


def test_equal_classes_are_a_round_robin_of_per_class_orders():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 25)
    rng.shuffle(labels)
    correct = rng.random(100) < 0.7
    confidence = rng.random(100)
    got = curriculum.order(correct, confidence, labels)
    per_class = [
        _reference_class_order(correct, confidence, np.flatnonzero(labels == c)) for c in range(4)
    ]
    expected = [per_class[c][i] for i in range(25) for c in range(4)]
    np.testing.assert_array_equal(got, expected)
    assert _window_deviation(labels[got]) <= 1.0
    # The easiest examples are confident and right, the last ones confidently wrong.
    assert correct[got[:40]].mean() > correct.mean() and not correct[got[-4:]].any()
    assert np.median(confidence[got[-8:]]) > np.median(confidence[~correct])


@pytest.mark.parametrize("seed", range(4))
def test_unequal_classes_keep_per_class_order_and_stay_stratified(seed):
    rng = np.random.default_rng(seed)
    classes = int(rng.integers(2, 8))
    counts = rng.integers(1, 60, size=classes)
    labels = rng.permutation(np.repeat(np.arange(classes), counts))
    correct = rng.random(len(labels)) < 0.8
    confidence = rng.random(len(labels)).round(2)  # ties exercise the index tie-break
    got = curriculum.order(correct, confidence, labels)
    assert sorted(got) == list(range(len(labels)))
    for c in range(classes):
        members = np.flatnonzero(labels == c)
        np.testing.assert_array_equal(
            got[labels[got] == c], _reference_class_order(correct, confidence, members)
        )
    # Tijdeman's bound on every prefix, hence every window is within 2 of proportional.
    in_order = labels[got]
    share = counts / counts.sum()
    prefix = np.cumsum(np.eye(classes)[in_order], 0)
    positions = np.arange(1, len(labels) + 1)[:, None]
    bound = 1 - 1 / (2 * classes - 2)
    assert np.abs(prefix - positions * share).max() <= bound + 1e-9
    assert _window_deviation(in_order) < 2.0


def test_two_classes_every_window_within_one():
    labels = np.array([0] * 37 + [1] * 91)
    got = curriculum.order(np.ones(128, bool), np.linspace(0, 1, 128), labels)
    assert _window_deviation(labels[got]) <= 1.0


def test_inverse_is_the_exact_reverse():
    rng = np.random.default_rng(3)
    correct, confidence = rng.random(50) < 0.6, rng.random(50)
    labels = rng.integers(0, 5, 50)
    forward = curriculum.order(correct, confidence, labels)
    np.testing.assert_array_equal(
        curriculum.order(correct, confidence, labels, reverse=True), forward[::-1]
    )
    np.testing.assert_array_equal(
        curriculum.curriculum_order("inverse", (correct, confidence, labels)), forward[::-1]
    )


def test_random_curriculum_is_a_seeded_permutation_without_scores():
    first = curriculum.curriculum_order("random", num_examples=50, seed=4)
    assert sorted(first) == list(range(50))
    np.testing.assert_array_equal(
        first, curriculum.curriculum_order("random", num_examples=50, seed=4)
    )
    assert not np.array_equal(first, curriculum.curriculum_order("random", num_examples=50, seed=5))
    with pytest.raises(ValueError, match="curriculum must be one of"):
        curriculum.curriculum_order("hardest", (np.ones(2, bool), np.ones(2), np.zeros(2, int)))


@pytest.mark.parametrize(
    "bad",
    [
        dict(correct=[], confidence=[], labels=[]),
        dict(correct=[True], confidence=[0.5, 0.2], labels=[0, 1]),
        dict(correct=[True], confidence=[np.nan], labels=[0]),
    ],
)
def test_order_rejects_bad_scores(bad):
    with pytest.raises(ValueError, match="empty|one entry per example|finite"):
        curriculum.order(**bad)


# ---- pacing ---------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule", ["linear", "step", "exponential"])
def test_pacing_prefixes_grow_as_specified_and_reach_the_whole_set(schedule):
    n, start, growth, epochs = 1000, 0.1, 4, 7
    expected_fraction = {
        "linear": lambda e: start + (1 - start) * e / growth,
        "step": lambda e: start,
        "exponential": lambda e: start * (1 / start) ** (e / growth),
    }[schedule]
    expected = [
        math.ceil(round(expected_fraction(e) * n, 6)) if e < growth else n for e in range(epochs)
    ]
    sizes = curriculum.pacing_sizes(schedule, n, epochs, start, growth)
    np.testing.assert_array_equal(sizes, expected)
    assert sizes[0] == 100 and sizes[growth] == n and np.all(np.diff(sizes) >= 0)
    order = np.random.default_rng(0).permutation(n)
    rows = curriculum.epoch_orders(order, epochs, schedule, start, growth, seed=1)
    assert rows.shape == (epochs, n)
    for row, size in zip(rows, sizes):
        prefix = order[:size]
        assert set(row) == set(prefix)  # only and all of the allowed prefix
        counts = np.bincount(row, minlength=n)[prefix]
        assert counts.max() - counts.min() <= 1  # cycled evenly
    assert sorted(rows[-1]) == list(range(n)) and not np.array_equal(rows[-1], order)


def test_no_pacing_repeats_the_fixed_order():
    order = np.array([3, 0, 2, 1])
    np.testing.assert_array_equal(curriculum.epoch_orders(order, 3), np.tile(order, (3, 1)))
    np.testing.assert_array_equal(curriculum.pacing_sizes("none", 4, 2, 0.5, 1), [4, 4])


@pytest.mark.parametrize(
    "args,flag",
    [
        (("quadratic", 0.2, 2), "--pacing"),
        (("linear", 0.0, 2), "--pacing_start"),
        (("linear", 1.5, 2), "--pacing_start"),
        (("step", 0.2, 0), "--pacing_epochs"),
    ],
)
def test_bad_pacing_names_the_flag(args, flag):
    with pytest.raises(ValueError, match=flag):
        curriculum.pacing_sizes(args[0], 10, 3, *args[1:])


# ---- pipeline -------------------------------------------------------------------------------
def test_dataset_lays_out_every_epoch_in_batches_that_do_not_straddle_epochs():
    x = np.arange(11, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    y = np.arange(11) % 3
    rows = curriculum.epoch_orders(
        np.random.default_rng(0).permutation(11), 3, "linear", 0.3, 2, seed=0
    )
    dataset, steps = curriculum.curriculum_dataset(x, y, rows, batch_size=4)
    batches = list(dataset)
    assert steps == 3 and len(batches) == 9
    assert [len(b[1]) for b in batches] == [4, 4, 3] * 3
    seen = np.concatenate([b[0].numpy()[:, 0] for b in batches]).astype(int)
    np.testing.assert_array_equal(seen, rows.reshape(-1))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y[rows.reshape(-1)])


def test_augmented_images_are_seeded_and_scaled():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 8, 8, 1)).astype(np.uint8)
    rows = np.tile(np.arange(6), (2, 1))
    first, _ = curriculum.curriculum_dataset(x, np.zeros(6), rows, 6, augment=True, seed=3)
    again, _ = curriculum.curriculum_dataset(x, np.zeros(6), rows, 6, augment=True, seed=3)
    a, b = [np.concatenate([batch[0].numpy() for batch in d]) for d in (first, again)]
    np.testing.assert_array_equal(a, b)
    assert a.shape == (12, 8, 8, 1) and 0.0 <= a.min() and a.max() <= 1.0
    assert not np.array_equal(a[:6], a[6:])  # epochs get different crops


class _IndexRecorder(keras.Model):
    """Adds up the example indices (x[:, 0]) of every training batch."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)
        self.total = keras.Variable(0.0, trainable=False)

    def call(self, x):
        return self.dense(x)

    def train_step(self, data):
        x, _ = data
        self.total.assign(tf.reduce_sum(x[:, 0]))
        return {"total": self.total}


def test_fit_with_steps_per_epoch_reads_epoch_e_from_row_e():
    n, batch = 10, 4
    x = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    rows = curriculum.epoch_orders(np.arange(n)[::-1], 4, "exponential", 0.2, 3, seed=2)
    dataset, steps = curriculum.curriculum_dataset(x, np.zeros(n), rows, batch)
    model = _IndexRecorder()
    model.compile(optimizer="sgd")
    sums = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda b, logs: sums.append(float(model.total.numpy()))
    )
    model.fit(
        dataset, epochs=4, steps_per_epoch=steps, verbose=0, shuffle=False, callbacks=[record]
    )
    expected = [rows[e, s : s + batch].sum() for e in range(4) for s in range(0, n, batch)]
    np.testing.assert_allclose(sums, expected)


# ---- scoring --------------------------------------------------------------------------------
def _linear_teacher(weights):
    teacher = keras.Sequential(
        [keras.Input((weights.shape[0],)), keras.layers.Dense(weights.shape[1], use_bias=False)]
    )
    teacher.layers[0].set_weights([weights.astype("float32")])
    return teacher


def test_score_matches_numpy_softmax():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(5, 3)) * 2
    x = rng.normal(size=(70, 5)).astype("float32")
    y = rng.integers(0, 3, 70)
    correct, confidence, labels = curriculum.score(
        _linear_teacher(weights), (x, y), num_classes=3, batch_size=16, verbose=0
    )
    logits = x.astype(np.float64) @ weights
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    np.testing.assert_array_equal(labels, y)
    np.testing.assert_array_equal(correct, probabilities.argmax(1) == y)
    np.testing.assert_allclose(confidence, probabilities.max(1), rtol=1e-5)
    # A tf.data set of batches is read in its own order.
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    again = curriculum.score(_linear_teacher(weights), dataset, verbose=0)
    np.testing.assert_allclose(again[1], confidence, rtol=1e-6)


def test_score_rejects_empty_data_and_a_teacher_with_other_classes():
    teacher = _linear_teacher(np.ones((4, 3)))
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, int))
    with pytest.raises(ValueError, match="empty"):
        curriculum.score(teacher, empty, verbose=0)
    x = np.ones((5, 4), np.float32)
    with pytest.raises(ValueError, match="teacher predicts 3 classes but the data set has 10"):
        curriculum.score(teacher, (x, np.zeros(5, int)), num_classes=10, verbose=0)
    with pytest.raises(ValueError, match="teacher predicts 3 classes .* label 7"):
        curriculum.score(teacher, (x, np.array([0, 1, 7, 2, 0])), verbose=0)


def test_confidence_profile_plot_is_a_png(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "profile.png"
    curriculum.plot_confidence_profile(
        rng.random(300) < 0.8, rng.random(300), rng.integers(0, 3, 300), path
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib import image

    pixels = image.imread(path)[..., :3]  # RGB in [0, 1]
    assert pixels.shape == (396, 1210, 3)  # 11 x 3.6 inches at 110 dpi
    for half in (pixels[:, :605], pixels[:, 605:]):  # both orders are drawn
        assert np.mean(np.any(half < 0.9, axis=-1)) > 0.02  # not blank
        blue = np.all(np.abs(half - np.array([31, 119, 180]) / 255) < 0.1, axis=-1)
        red = np.all(np.abs(half - np.array([214, 39, 40]) / 255) < 0.1, axis=-1)
        assert blue.sum() > 50 and red.sum() > 10  # teacher-correct and teacher-wrong points
