"""tf.data pipelines over NumPy arrays, with the standard CIFAR augmentation.

Augmentation happens here, once per example, so a teacher and a student fed from the same
batch see the same augmented images.
"""

import numpy as np
import tensorflow as tf

_PAD = 4


def convert(x):
    """uint8 -> float32 in [0, 1]; int32 token ids -> the text models' dict inputs; other
    dtypes -> float32 unchanged (the `to_float` convention)."""
    if x.dtype == tf.uint8:
        return tf.cast(x, tf.float32) / 255.0
    if x.dtype == tf.int32:
        return {
            "token_ids": x,
            "padding_mask": tf.cast(tf.not_equal(x, 0), tf.int32),
            "segment_ids": tf.zeros_like(x),
        }
    return tf.cast(x, tf.float32)


def augment_image(image, seed, flip):
    """Zero-pads an [H, W, C] float image by 4 pixels, crops a random HxW window back out and,
    when `flip`, mirrors it left-right with probability 1/2.

    Args:
      image: float32 [H, W, C].
      seed: int64 [2] stateless seed, so one pipeline seed reproduces every crop.
      flip: Python bool.
    Returns:
      float32 [H, W, C].
    """
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    padded = tf.pad(image, [[_PAD, _PAD], [_PAD, _PAD], [0, 0]])
    image = tf.image.stateless_random_crop(padded, tf.shape(image), seed=crop_seed)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    return image


def as_dataset(x, y, batch_size, shuffle=False, augment=False, seed=0, drop_remainder=False):
    """Batches (x, y) into a tf.data.Dataset of (float32 inputs, int32 labels).

    Args:
      x: uint8 images [N, H, W, C] (scaled to [0, 1]) or float vectors [N, D].
      y: integer labels [N].
      batch_size: examples per batch.
      shuffle: reshuffle the examples every epoch (seeded by `seed`).
      augment: pad-4 random crop plus horizontal flip for 32x32x3 images, pad-4 random crop
        only for other image shapes (flipping digits or letters changes their meaning), and
        nothing for vectors. Crops differ from epoch to epoch but repeat for a given seed.
      seed: int seed of the shuffle and the augmentation.
      drop_remainder: drop the last batch when it is smaller than `batch_size`.
    Returns:
      tf.data.Dataset yielding (x [B, ...] float32, y [B] int32), prefetched.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    x = np.asarray(x)
    y = np.asarray(y).astype(np.int32)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle and len(x):
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    if augment and x.ndim == 4:
        flip = tuple(x.shape[1:]) == (32, 32, 3)
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip((dataset, seeds)).map(
            lambda pair, pair_seed: (augment_image(convert(pair[0]), pair_seed, flip), pair[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    else:
        # Converting whole batches is cheaper than one map call per example.
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder).map(
            lambda inputs, labels: (convert(inputs), labels), num_parallel_calls=tf.data.AUTOTUNE
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def shuffled_orders(num_examples, epochs, seed=0, first_epoch=0):
    """A fresh permutation of the examples for each epoch, a function of (seed, epoch) alone.

    Returns:
      int64 [epochs - first_epoch, num_examples]: row e is epoch first_epoch + e.
    """
    return np.stack(
        [
            np.random.default_rng([seed, epoch]).permutation(num_examples)
            for epoch in range(first_epoch, epochs)
        ]
    ).astype(np.int64)


def _carried(value):
    """One extra, as a function of a batch's indices int64 [B] -> its rows.

    In-memory arrays become graph constants gathered in graph; memory-mapped arrays (a disk
    cache, `np.load(..., mmap_mode="r")`) stay on disk and each batch reads only its rows, through
    `tf.numpy_function`. A tuple of arrays gives a tuple of rows.
    """
    if isinstance(value, tuple):
        parts = [_carried(part) for part in value]
        return lambda index: tuple(part(index) for part in parts)
    if isinstance(value, np.memmap):
        dtype = np.float32 if value.dtype.kind == "f" else value.dtype
        shape = (None, *value.shape[1:])

        def rows(index):
            return np.asarray(value[np.asarray(index)], dtype)

        def gather(index):
            result = tf.numpy_function(rows, [index], tf.as_dtype(dtype), stateful=False)
            return tf.ensure_shape(result, shape)

        return gather
    constant = tf.constant(np.asarray(value))
    return lambda index: tf.gather(constant, index)


def epochs_dataset(x, y, orders, batch_size, augment=False, seed=0, first_epoch=0, extras=None):
    """One tf.data pipeline for several epochs; fit it with `steps_per_epoch`.

    Row e of `orders` lists the examples of epoch first_epoch + e. Batches never straddle two
    epochs, and every random choice is a function of (seed, epoch, position), so a run resumed
    at epoch k reads exactly the batches an uninterrupted run reads from epoch k on. Keras keeps
    one iterator across epochs when `steps_per_epoch` is given.

    Args:
      x, y: training arrays (`tfkd.data` conventions); orders: int [epochs, N].
      augment: the `as_dataset` augmentation (images only).
      extras: optional dict name -> [N, ...] array (or a tuple of them) carried with each
        example; batches are then (x, {"labels": y, name: value, ...}). Memory-mapped arrays
        are read batch by batch, never loaded whole; float ones arrive as float32.
    Returns:
      (dataset of (x [B, ...] float32, y [B] int32 or a dict), steps_per_epoch).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    orders = np.asarray(orders, np.int64)
    if orders.ndim != 2 or not orders.shape[1]:
        raise ValueError(f"orders must be [epochs, N] with N > 0, got shape {orders.shape}")
    x, y = np.asarray(x), np.asarray(y).astype(np.int32)
    inputs, labels = tf.constant(x), tf.constant(y)
    carried = {name: _carried(value) for name, value in (extras or {}).items()}
    size = orders.shape[1]
    image_augment = augment and x.ndim == 4
    flip = tuple(x.shape[1:]) == (32, 32, 3)

    def targets(index):
        if not carried:
            return tf.gather(labels, index)
        return {
            "labels": tf.gather(labels, index),
            **{name: gather(index) for name, gather in carried.items()},
        }

    def example(index, position):
        image = convert(tf.gather(inputs, index))
        stateless_seed = tf.stack([tf.constant(seed, tf.int64), position])
        return augment_image(image, stateless_seed, flip), index

    def one_epoch(epoch, row):
        if not image_augment:
            batches = tf.data.Dataset.from_tensor_slices(row).batch(batch_size)
            return batches.map(lambda index: (convert(tf.gather(inputs, index)), targets(index)))
        positions = epoch * size + tf.range(size, dtype=tf.int64)
        # Extras are gathered per batch (one read of a memory-mapped array per batch).
        return (
            tf.data.Dataset.from_tensor_slices((row, positions))
            .map(example)
            .batch(batch_size)
            .map(lambda images, index: (images, targets(index)))
        )

    epochs = np.arange(first_epoch, first_epoch + len(orders), dtype=np.int64)
    dataset = tf.data.Dataset.from_tensor_slices((epochs, orders)).flat_map(one_epoch)
    return dataset.prefetch(tf.data.AUTOTUNE), -(-size // batch_size)
