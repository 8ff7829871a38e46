"""Teacher-scored curricula: scoring, a class-stratified easy-to-hard order, pacing, pipelines.

Khan, Nadiminty and Amin, "Selective Teacher Reliance for Knowledge Distillation": the teacher
scores every training example once (is it right, and how confident: the top-1 probability);
the student then sees the examples easiest first, with classes interleaved so that no stretch
of the order is dominated by one class. Pacing (Hacohen and Weinshall 2019) optionally
restricts early epochs to the easiest prefix of the order.

Every function here works on NumPy arrays except `score` (runs the teacher) and
`curriculum_dataset` (builds the tf.data pipeline any `fit` can use).
"""

import math
import weakref

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfkd.data import pipeline

CURRICULA = ("none", "teacher", "inverse", "random")
PACINGS = ("none", "linear", "step", "exponential")


# ---- scoring ----------------------------------------------------------------------------------
def score(teacher, dataset, num_classes=None, batch_size=256, verbose=1):
    """Runs `teacher` once over `dataset` and records, per example, its verdict and confidence.

    Args:
      teacher: a model mapping inputs to logits [batch, K].
      dataset: a tf.data.Dataset of (x, y) batches (read once, in its order), or an (x, y)
        pair of arrays in the `tfkd.data` conventions (uint8 images are scaled to [0, 1]).
      num_classes: when given, the number of classes the teacher must predict.
      batch_size: batch size used for an (x, y) pair.
      verbose: 0 silent, 1 progress bar, 2 one line at the end.
    Returns:
      (correct bool [N], confidence float32 [N] = max_k softmax(z_t)_k, labels int64 [N]).
    Raises:
      ValueError for an empty data set, or a teacher whose class count differs from
      `num_classes` or does not cover the labels.
    """
    if isinstance(dataset, (tuple, list)):
        x, y = dataset
        dataset = pipeline.as_dataset(x, y, batch_size)
    steps = int(dataset.cardinality())
    progress = keras.utils.Progbar(steps if steps > 0 else None, verbose=verbose, unit_name="batch")
    predict = tf.function(lambda inputs: teacher(inputs, training=False), reduce_retracing=True)
    correct, confidence, labels = [], [], []
    for step, (inputs, batch_labels) in enumerate(dataset):
        logits = predict(inputs)
        classes = int(logits.shape[-1])
        if num_classes is not None and classes != num_classes:
            raise ValueError(
                f"teacher predicts {classes} classes but the data set has {num_classes}"
            )
        batch_labels = np.asarray(batch_labels).astype(np.int64).reshape(-1)
        if batch_labels.size and batch_labels.max() >= classes:
            raise ValueError(
                f"teacher predicts {classes} classes but the data set has label "
                f"{int(batch_labels.max())}"
            )
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1).numpy()
        correct.append(np.argmax(probabilities, axis=-1) == batch_labels)
        confidence.append(probabilities.max(axis=-1))
        labels.append(batch_labels)
        progress.update(step + 1)
    if not labels or not sum(len(batch) for batch in labels):
        raise ValueError("cannot score an empty data set: it has no examples")
    return np.concatenate(correct), np.concatenate(confidence), np.concatenate(labels)


_SCORE_CACHE = []


def training_scores(teacher, bundle, batch_size=256, verbose=1):
    """`score` of `teacher` on `bundle.train`, computed once per (teacher, train split) pair.

    The curriculum and the selective-reliance method both need the scores; the cache lets the
    second one reuse the teacher pass of the first.
    """
    x, y = bundle.train
    for teacher_ref, x_ref, y_ref, scores in _SCORE_CACHE:
        if teacher_ref() is teacher and x_ref() is x and y_ref() is y:
            return scores
    scores = score(
        teacher, (x, y), num_classes=bundle.num_classes, batch_size=batch_size, verbose=verbose
    )
    _SCORE_CACHE[:] = [(weakref.ref(teacher), weakref.ref(x), weakref.ref(y), scores)]
    return scores


# ---- order --------------------------------------------------------------------------------------
def difficulty_rank(correct, confidence):
    """Example indices from easiest to hardest, ignoring classes.

    Correct examples first by confidence descending; then wrong ones by confidence ascending,
    so that confidently wrong examples come last. Ties keep index order.

    Args:
      correct: bool [N]; confidence: float [N].
    Returns:
      int64 [N], a permutation of range(N).
    """
    correct = np.asarray(correct, bool)
    confidence = np.asarray(confidence, np.float64)
    key = np.where(correct, -confidence, confidence)
    return np.lexsort((np.arange(len(correct)), key, ~correct)).astype(np.int64)


def stratified_classes(class_counts):
    """A sequence of class indices holding class c exactly `class_counts[c]` times, spread so
    that every prefix of length m holds class c within 1 - 1/(2K - 2) of m * p_c.

    Tijdeman's solution of the chairman assignment problem (Discrete Math. 32, 1980): at step m
    the class with the earliest deadline (k_c + 1 - s) / p_c among those with m p_c - k_c >= s,
    s = 1 / (2K - 2), goes next. Windows (differences of two prefixes) are therefore within 2 of
    proportional; with equal class counts the sequence is a round robin, within 1.

    Args:
      class_counts: int [K], each >= 0.
    Returns:
      int64 [sum(class_counts)].
    """
    counts = np.asarray(class_counts, np.int64)
    total = int(counts.sum())
    present = np.flatnonzero(counts)
    if len(present) <= 1:
        return np.full(total, present[0] if len(present) else 0, np.int64)
    counts = counts[present]
    twice = 2 * len(counts) - 2  # 1 / s
    taken = np.zeros(len(counts), np.int64)
    sequence = np.empty(total, np.int64)
    for m in range(1, total + 1):
        # Integer form of m p_c - k_c >= s: (m n_c - k_c N) (2K - 2) >= N.
        eligible = (m * counts - taken * total) * twice >= total
        deadline = np.where(eligible, ((taken + 1) * twice - 1) / counts, np.inf)
        chosen = int(np.argmin(deadline))
        sequence[m - 1] = chosen
        taken[chosen] += 1
    return present[sequence].astype(np.int64)


def order(correct, confidence, labels, reverse=False):
    """The curriculum: example indices in training order, easiest first, classes interleaved.

    Each class's examples keep their `difficulty_rank` order; `stratified_classes` decides
    which class fills each position, so every window holds the classes in about their overall
    proportion. `reverse=True` is the exact reverse (hardest first).

    Args:
      correct: bool [N]; confidence: float [N]; labels: int [N] (non-negative).
    Returns:
      int64 [N], a permutation of range(N).
    """
    correct, confidence, labels = (np.asarray(a) for a in (correct, confidence, labels))
    if not len(labels):
        raise ValueError("cannot order an empty data set: it has no examples")
    if not len(correct) == len(confidence) == len(labels):
        raise ValueError(
            f"correct, confidence and labels must have one entry per example, got "
            f"lengths {len(correct)}, {len(confidence)}, {len(labels)}"
        )
    if not np.all(np.isfinite(confidence)):
        raise ValueError("confidence must be finite")
    labels = labels.astype(np.int64)
    if labels.min() < 0:
        raise ValueError(f"labels must be >= 0, got {int(labels.min())}")
    ranked = difficulty_rank(correct, confidence)
    sequence = stratified_classes(np.bincount(labels))
    result = np.empty(len(labels), np.int64)
    ranked_labels = labels[ranked]
    for label in np.unique(labels):
        result[sequence == label] = ranked[ranked_labels == label]
    return result[::-1].copy() if reverse else result


def curriculum_order(kind, scores=None, num_examples=None, seed=0):
    """Training order for `--curriculum=teacher|inverse|random`.

    teacher and inverse: `order` of `score`'s (correct, confidence, labels). random: a fixed
    seeded permutation of `num_examples`, the control of Hacohen and Weinshall (2019): the same
    pacing and fixed order, without the teacher's notion of difficulty.
    """
    if kind == "random":
        if num_examples is None or num_examples < 1:
            raise ValueError(f"a random curriculum needs num_examples >= 1, got {num_examples}")
        return np.random.default_rng(seed).permutation(num_examples).astype(np.int64)
    if kind not in ("teacher", "inverse"):
        raise ValueError(f"curriculum must be one of {', '.join(CURRICULA[1:])}, got {kind!r}")
    return order(*scores, reverse=kind == "inverse")


# ---- pacing -------------------------------------------------------------------------------------
def pacing_fraction(schedule, epoch, start, growth_epochs):
    """Fraction of the order in use at 0-based `epoch`.

    linear: start + (1 - start) e / E; step: start before epoch E, then 1; exponential:
    start * (1 / start)^(e / E), i.e. a constant factor per epoch; none: 1. Every schedule
    reaches the whole set at epoch E = `growth_epochs`.
    """
    check_pacing(schedule, start, growth_epochs)
    if schedule == "none" or epoch >= growth_epochs:
        return 1.0
    progress = epoch / growth_epochs
    if schedule == "linear":
        return start + (1.0 - start) * progress
    if schedule == "step":
        return start
    return start ** (1.0 - progress)


def check_pacing(schedule, start, growth_epochs):
    if schedule not in PACINGS:
        raise ValueError(f"--pacing must be one of {', '.join(PACINGS)}, got {schedule!r}")
    if not 0.0 < start <= 1.0:
        raise ValueError(f"--pacing_start must be in (0, 1], got {start}")
    if int(growth_epochs) != growth_epochs or growth_epochs < 1:
        raise ValueError(f"--pacing_epochs must be an integer >= 1, got {growth_epochs}")


def pacing_sizes(schedule, num_examples, epochs, start, growth_epochs):
    """Prefix size per epoch: ceil(fraction * N), at least 1. Returns int64 [epochs]."""
    sizes = [
        math.ceil(pacing_fraction(schedule, epoch, start, growth_epochs) * num_examples - 1e-9)
        for epoch in range(epochs)
    ]
    return np.clip(np.asarray(sizes, np.int64), 1, num_examples)


def epoch_orders(order_indices, epochs, schedule="none", start=1.0, growth_epochs=1, seed=0):
    """The examples of every epoch, N slots each.

    `schedule="none"` repeats the order unchanged every epoch (the paper's fixed easy-to-hard
    order). Otherwise epoch e draws from the first `pacing_sizes(...)[e]` examples of the order,
    shuffled within that prefix and cycled to fill N slots, so every epoch has the same number
    of steps (the learning-rate schedule and progress bars are unchanged).

    Returns:
      int64 [epochs, N].
    """
    order_indices = np.asarray(order_indices, np.int64)
    size = len(order_indices)
    if schedule == "none":
        check_pacing(schedule, start, growth_epochs)
        return np.tile(order_indices, (epochs, 1))
    rng = np.random.default_rng(seed)
    rows = []
    for prefix in pacing_sizes(schedule, size, epochs, start, growth_epochs):
        repeats = math.ceil(size / prefix)
        row = np.concatenate([rng.permutation(order_indices[:prefix]) for _ in range(repeats)])
        rows.append(row[:size])
    return np.stack(rows)


# ---- pipeline ---------------------------------------------------------------------------------
def curriculum_dataset(x, y, orders, batch_size, augment=False, seed=0, first_epoch=0):
    """One tf.data pipeline for all epochs of `epoch_orders` (from `first_epoch` on); fit it with
    `steps_per_epoch`. See `tfkd.data.pipeline.epochs_dataset`.

    Returns:
      (dataset of (x [B, ...] float32, y [B] int32), steps_per_epoch).
    """
    return pipeline.epochs_dataset(
        x, y, np.asarray(orders)[first_epoch:], batch_size, augment, seed, first_epoch
    )


# ---- selective reliance -------------------------------------------------------------------------
def selective_reliance_lambda(batch_confidence, max_confidence, shift):
    """lambda = clip((1 - C_b) / max(C_g) - s, 0, 1): the weight of the teacher for one batch.

    Args:
      batch_confidence: mean teacher confidence of the batch, scalar (number or tensor).
      max_confidence: largest teacher confidence over the training set, in (0, 1].
      shift: s, subtracted so that lambda starts near 0 on the easiest batches.
    Returns:
      scalar in [0, 1] (a tensor when `batch_confidence` is one).
    """
    if isinstance(max_confidence, (int, float, np.floating)) and not 0.0 < max_confidence <= 1.0:
        raise ValueError(f"max_confidence must be in (0, 1], got {max_confidence}")
    value = (1.0 - batch_confidence) / max_confidence - shift
    if isinstance(value, (int, float, np.floating)):
        return float(min(max(value, 0.0), 1.0))
    return ops.clip(value, 0.0, 1.0)


# ---- plots --------------------------------------------------------------------------------------
def plot_confidence_profile(correct, confidence, labels, path):
    """The paper's Fig. 1: teacher confidence along the training order, normal and inverse."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    correct, confidence = np.asarray(correct, bool), np.asarray(confidence)
    figure, axes = pyplot.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    window = max(1, len(confidence) // 100)
    for axis, reverse, title in (
        (axes[0], False, "teacher curriculum (easy to hard)"),
        (axes[1], True, "inverse curriculum (hard to easy)"),
    ):
        indices = order(correct, confidence, labels, reverse=reverse)
        position = np.arange(len(indices))
        right = correct[indices]
        axis.scatter(
            position[right],
            confidence[indices][right],
            s=1,
            c="tab:blue",
            label="teacher correct",
            rasterized=True,
        )
        axis.scatter(
            position[~right],
            confidence[indices][~right],
            s=2,
            c="tab:red",
            label="teacher wrong",
            rasterized=True,
        )
        smooth = np.convolve(confidence[indices], np.ones(window) / window, mode="valid")
        axis.plot(position[window - 1 :], smooth, c="black", lw=1, label=f"mean of {window}")
        axis.set(title=title, xlabel="position in training order")
    axes[0].set_ylabel("teacher confidence (top-1 probability)")
    axes[1].legend(loc="lower left", markerscale=4, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def plot_batch_values(values, path, steps_per_epoch=None, ylabel="lambda"):
    """A per-batch training scalar (selective reliance's lambda) against the training step."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axis = pyplot.subplots(figsize=(8, 3.2))
    axis.plot(np.arange(1, len(values) + 1), values, lw=0.8)
    if steps_per_epoch:
        for boundary in range(steps_per_epoch, len(values), steps_per_epoch):
            axis.axvline(boundary + 0.5, c="grey", lw=0.5, ls=":")
    axis.set(xlabel="training step (batch)", ylabel=ylabel, ylim=(-0.02, None))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
