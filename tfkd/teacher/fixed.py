"""Fixed teaching's data and out-of-domain inputs: the teacher's logits computed once, on the
un-augmented inputs, carried with each example in the batch format of
`tfkd.teacher.batch_format` (Beyer et al. 2022's "fix/ic" with `teaching="fixed"`).

    logits = teacher_predictions(teacher, x_train)
    train = fixed_dataset(x_train, y_train, logits, batch_size=128, shuffle=True)
    tfkd.Distiller(student, teacher, teaching="fixed").fit(train, ...)
"""

import numpy as np
import tensorflow as tf

from tfkd.data import as_dataset, to_float
from tfkd.data.pipeline import convert
from tfkd.teacher import batch_format


def teacher_predictions(teacher, x, batch_size=256, verbose=0):
    """The teacher's logits on un-augmented inputs, computed once.

    Args:
      teacher: keras model, inputs in the `to_float` convention.
      x: uint8 images [N, H, W, C] or float vectors [N, D].
    Returns:
      float32 [N, K].
    """
    inputs = as_dataset(x, np.zeros(len(x), np.int32), batch_size).map(lambda a, b: a)
    return np.asarray(teacher.predict(inputs, verbose=verbose), np.float32)


def fixed_dataset(x, y, teacher_logits, batch_size, shuffle=False, seed=0, drop_remainder=False):
    """Batches for fixed teaching: (x float32 [B, ...], {"labels": int32 [B],
    "teacher_logits": float32 [B, K]}), each example keeping its own precomputed logits."""
    y = np.asarray(y).astype(np.int32)
    teacher_logits = np.asarray(teacher_logits, np.float32)
    if not len(x) == len(y) == len(teacher_logits):
        raise ValueError(
            f"x, y and teacher_logits disagree on the number of examples: "
            f"{len(x)}, {len(y)}, {len(teacher_logits)}"
        )
    dataset = tf.data.Dataset.from_tensor_slices((x, batch_format.targets(y, teacher_logits)))
    if shuffle:
        dataset = dataset.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.map(
        lambda inputs, targets: (convert(inputs), targets), num_parallel_calls=tf.data.AUTOTUNE
    ).prefetch(tf.data.AUTOTUNE)


def match_input_shape(x, input_shape, name="--distill_dataset", chunk_size=2048):
    """Brings another data set's inputs to the teacher's input shape.

    Images are resized (bilinear, antialiased) and converted between grey-scale (averaged with
    the ITU-R 601 luma weights) and RGB (repeated); vectors must already have the right size.

    Args:
      x: uint8 images [N, h, w, c] or float vectors [N, d].
      input_shape: the teacher's (H, W, C) or (D,).
    Returns:
      x with shape [N, *input_shape], uint8 for images.
    Raises:
      ValueError naming `name` when no conversion applies.
    """
    x = np.asarray(x)
    input_shape = tuple(input_shape)
    if x.shape[1:] == input_shape:
        return x
    if x.ndim != 4 or len(input_shape) != 3:
        raise ValueError(
            f"{name}: inputs of shape {x.shape[1:]} cannot be brought to the "
            f"teacher's input shape {input_shape}; only images can be resized"
        )
    channels, target = x.shape[-1], input_shape[-1]
    if channels != target and {channels, target} != {1, 3}:
        raise ValueError(
            f"{name}: cannot convert {channels}-channel images to {target} channels "
            "(only grey-scale <-> RGB)"
        )
    converted = []
    for start in range(0, len(x), chunk_size):
        chunk = tf.convert_to_tensor(to_float(x[start : start + chunk_size]))
        chunk = tf.image.resize(chunk, input_shape[:2], antialias=True)
        if channels == 3 and target == 1:
            chunk = tf.image.rgb_to_grayscale(chunk)
        elif channels == 1 and target == 3:
            chunk = tf.image.grayscale_to_rgb(chunk)
        converted.append(chunk.numpy())
    images = np.concatenate(converted) if converted else np.zeros((0, *input_shape), np.float32)
    if x.dtype == np.uint8:
        return np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
    return images.astype(np.float32)
