"""tf.data pipelines over NumPy arrays, with the standard CIFAR augmentation.

Augmentation happens here, once per example, so a teacher and a student fed from the same
batch see the same augmented images.
"""
import numpy as np
import tensorflow as tf

_PAD = 4


def convert(x):
    """uint8 -> float32 in [0, 1]; other dtypes -> float32 unchanged (the `to_float` convention)."""
    if x.dtype == tf.uint8:
        return tf.cast(x, tf.float32) / 255.0
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
            num_parallel_calls=tf.data.AUTOTUNE)
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    else:
        # Converting whole batches is cheaper than one map call per example.
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder).map(
            lambda inputs, labels: (convert(inputs), labels),
            num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
