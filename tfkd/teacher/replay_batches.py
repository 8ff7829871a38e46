"""Training batches that replay stored views (`tfkd.teacher.replay`): each example's view is
re-made from its stored parameters and carries the teacher's stored top-k target as logits, in
the batch format of `tfkd.teacher.batch_format`, so no teacher runs while the student trains.
"""

import numpy as np
import tensorflow as tf

from tfkd.data.pipeline import convert
from tfkd.teacher import batch_format
from tfkd.teacher.replay import apply_view, expand_targets


def _check_replay_arrays(storage, x, y, batch_size):
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not len(x) == len(y) == storage.images:
        raise ValueError(
            f"x, y and the replay storage disagree on the number of images: "
            f"{len(x)}, {len(y)}, {storage.images}"
        )


def _replay_batch(storage, x, y, temperature, return_view_ids=False):
    """load(example int [B], view int32 [B]) -> (views float32 [B, H, W, C], targets dict)."""
    y = np.asarray(y).astype(np.int32)
    temperature = float(storage.temperature if temperature is None else temperature)
    images, labels = tf.constant(np.asarray(x)), tf.constant(y)
    boxes = tf.constant(storage.boxes.astype(np.float32))
    flips = tf.constant(storage.flips)
    indices = tf.constant(storage.topk_indices.astype(np.int32))
    probabilities = tf.constant(storage.topk_probabilities.astype(np.float32))
    mixing = storage.partners is not None
    if mixing:
        partners = tf.constant(storage.partners)
        weights = tf.constant(storage.mix_weights.astype(np.float32))

    def load(example, view):
        pairs = tf.stack([tf.cast(example, tf.int32), view], axis=1)
        partner_images = mix = None
        if mixing:
            partner_images = convert(tf.gather(images, tf.gather_nd(partners, pairs)))
            mix = tf.gather_nd(weights, pairs)
        views = apply_view(
            convert(tf.gather(images, example)),
            tf.gather_nd(boxes, pairs),
            tf.gather_nd(flips, pairs),
            partner_images,
            mix,
        )
        target = expand_targets(
            tf.gather_nd(indices, pairs), tf.gather_nd(probabilities, pairs), storage.num_classes
        )
        tiny = np.finfo(np.float32).tiny  # a zero probability becomes a finite logit
        result = batch_format.targets(
            tf.gather(labels, example), temperature * tf.math.log(tf.maximum(target, tiny))
        )
        if return_view_ids:
            result.update(example_index=tf.cast(example, tf.int32), view_index=view)
        return views, result

    return load


def replay_dataset(
    storage,
    x,
    y,
    batch_size,
    seed=0,
    shuffle=True,
    drop_remainder=False,
    return_view_ids=False,
):
    """Training batches that replay one stored view of each image, drawn afresh every epoch.

    Args:
      storage: `ReplayStorage` built on these images.
      x: the images `storage` was built on, uint8 [N, H, W, C]; y: integer labels [N].
      batch_size: examples per batch; seed: seeds the order and the view choice.
      shuffle: reshuffle the images every epoch.
      return_view_ids: also carry "example_index" and "view_index" int32 [B].
    Returns:
      tf.data.Dataset of (views float32 [B, H, W, C], {"labels": int32 [B], "teacher_logits":
      float32 [B, K]}), where teacher_logits = T * log(target) at the storage's temperature T:
      softmax(teacher_logits / T) is the stored kd_topk target (`tfkd.teacher.batch_format`).
    """
    _check_replay_arrays(storage, x, y, batch_size)
    load = _replay_batch(storage, x, y, None, return_view_ids)

    def draw(example, batch_seed):
        view = tf.random.stateless_uniform(
            tf.shape(example), batch_seed, 0, storage.views, dtype=tf.int32
        )
        return load(example, view)

    examples = tf.data.Dataset.range(storage.images)
    if shuffle and storage.images:
        examples = examples.shuffle(storage.images, seed=seed, reshuffle_each_iteration=True)
    examples = examples.batch(batch_size, drop_remainder=drop_remainder)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return (
        tf.data.Dataset.zip((examples, seeds))
        .map(draw, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def epoch_views(num_examples, num_views, epochs, seed=0, first_epoch=0):
    """The stored view each example replays in each epoch, a function of (seed, epoch) alone.

    Returns:
      int32 [epochs - first_epoch, num_examples]: row e, column i is example i's view in epoch
      first_epoch + e.
    """
    return np.stack(
        [
            np.random.default_rng([seed, epoch, 1]).integers(0, num_views, num_examples)
            for epoch in range(first_epoch, epochs)
        ]
    ).astype(np.int32)


def replay_epochs_dataset(
    storage, x, y, orders, batch_size, seed=0, first_epoch=0, temperature=None
):
    """Replay batches for several epochs, resumable like `tfkd.data.pipeline.epochs_dataset`.

    Row e of `orders` lists the examples of epoch first_epoch + e; each example replays the view
    `epoch_views(...)` chose for it in that epoch, so a run resumed at epoch k reads exactly the
    batches an uninterrupted run reads from epoch k on. Fit it with `steps_per_epoch`.

    Args:
      storage, x, y, temperature: as in `replay_dataset`.
      orders: int [epochs - first_epoch, N]; batch_size: examples per batch; seed: seeds the
        view choice.
    Returns:
      (dataset of (views float32 [B, H, W, C], {"labels": int32 [B], "teacher_logits": float32
      [B, K]}), steps_per_epoch).
    """
    _check_replay_arrays(storage, x, y, batch_size)
    orders = np.asarray(orders, np.int64)
    if orders.ndim != 2 or orders.shape[1] != storage.images:
        raise ValueError(f"orders must be [epochs, {storage.images}], got shape {orders.shape}")
    load = _replay_batch(storage, x, y, temperature)
    chosen = epoch_views(
        storage.images, storage.views, first_epoch + len(orders), seed, first_epoch
    )
    views = np.take_along_axis(chosen, orders, axis=1)  # the view of each position's example

    def one_epoch(row, row_views):
        return tf.data.Dataset.from_tensor_slices((row, row_views)).batch(batch_size)

    dataset = tf.data.Dataset.from_tensor_slices((orders, views)).flat_map(one_epoch)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE), -(-storage.images // batch_size)
