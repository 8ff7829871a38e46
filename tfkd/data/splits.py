"""Seeded, stratified selection of examples and label checks."""

import numpy as np


def check_labels(labels, num_classes, dataset_name):
    """Returns `labels` as int64 [N] after checking every value is a class index.

    Raises:
      ValueError naming the data set and the first bad value.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(
            f"data set {dataset_name!r}: labels must be a 1-D array, got shape {labels.shape}"
        )
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise ValueError(
                f"data set {dataset_name!r}: labels must be integers, got dtype {labels.dtype}"
            )
    labels = labels.astype(np.int64)
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise ValueError(
            f"data set {dataset_name!r}: label {int(bad[0])} is outside [0, {num_classes})"
        )
    return labels


def _allocate(class_counts, total, rng):
    """Splits `total` picks over classes in proportion to `class_counts` (largest remainder).

    Args:
      class_counts: int array [K], examples per class.
      total: int, picks to hand out, 0 <= total <= class_counts.sum().
    Returns:
      int array [K] summing to `total`, each entry <= its class count.
    """
    exact = class_counts * (total / max(int(class_counts.sum()), 1))
    picks = np.floor(exact).astype(np.int64)
    remainder = exact - picks
    # Random tie-breaking keeps equal-sized classes from always losing in index order.
    order = np.lexsort((rng.random(len(class_counts)), -remainder))
    for k in order[: total - int(picks.sum())]:
        picks[k] += 1
    return picks


def stratified_choice(labels, count, seed):
    """Chooses `count` example indices, each class keeping its share of `labels`.

    Args:
      labels: int array [N].
      count: number of indices to choose, 0 <= count <= N.
      seed: int, makes the choice reproducible.
    Returns:
      (chosen, rest): sorted int64 index arrays partitioning range(N); len(chosen) == count.
    """
    labels = np.asarray(labels)
    if not 0 <= count <= len(labels):
        raise ValueError(f"count must be in [0, {len(labels)}], got {count}")
    rng = np.random.default_rng(seed)
    classes, inverse, class_counts = np.unique(labels, return_inverse=True, return_counts=True)
    picks = _allocate(class_counts, count, rng)
    chosen = []
    for k in range(len(classes)):
        members = np.flatnonzero(inverse == k)
        chosen.append(rng.choice(members, size=picks[k], replace=False))
    chosen = np.sort(np.concatenate(chosen + [np.zeros(0, np.int64)]).astype(np.int64))
    rest = np.setdiff1d(np.arange(len(labels), dtype=np.int64), chosen, assume_unique=True)
    return chosen, rest


def take(arrays, indices):
    """Indexes every array of a (x, y) pair with the same indices."""
    return tuple(array[indices] for array in arrays)


def split_validation(x, y, fraction, seed):
    """Carves a stratified validation set out of a train split.

    Returns:
      ((train_x, train_y), (validation_x, validation_y)); validation has round(fraction * N)
      examples and keeps x's trailing shape even when empty.
    """
    validation, train = stratified_choice(y, int(round(fraction * len(y))), seed)
    return take((x, y), train), take((x, y), validation)


def limit(x, y, max_examples, seed):
    """Keeps a stratified subset of at most `max_examples` examples (None or 0: keep all)."""
    if not max_examples or max_examples >= len(y):
        return x, y
    chosen, _ = stratified_choice(y, max_examples, seed)
    return take((x, y), chosen)
