"""Reductions over the global batch: what N replicas must share so that they take the step one
replica takes on the concatenated batch.

Keras sums the replicas' gradients, so every per-element term is divided by a global quantity
(the global number of elements, or the global sum of the weights of valid tokens); batch-level
statistics are computed on the gathered global batch; and augmentation parameters are drawn for
the global batch, each replica taking its own rows (`replica_rows`).
"""

import tensorflow as tf

from tfkd import losses

# Labels equal to this are not trained on (Hugging Face's and TRL's convention for sequences).
IGNORE_LABEL = -100


def _global_sum(value):
    """The sum of a per-replica scalar over the replicas in sync (unchanged outside a replica
    context with more than one replica). Reads counts of valid elements: no gradient."""
    value = tf.stop_gradient(value)
    if tf.distribute.in_cross_replica_context():
        return value
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def gather_global_batch(value):
    """`value` [local batch, ...] -> [global batch, ...] inside a replica context with more than
    one replica (gradients flow back to each replica's own slice); unchanged otherwise.

    For batch-level statistics (DIST's per-class correlations), which a distiller computes on
    the global batch and passes to the pure loss; the loss then enters the objective through
    `tfkd.losses.replica_scaled`.
    """
    if value is None or tf.distribute.in_cross_replica_context():
        return value
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_gather(value, axis=0)


def _to_rank(weights, rank):
    """`weights` of shape [batch], [batch, 1] or the full leading shape, as a tensor of `rank`
    axes that broadcasts against it; None if it cannot."""
    weights = tf.cast(weights, tf.float32)
    have = len(weights.shape)
    if have == rank + 1 and weights.shape[-1] == 1:
        return tf.squeeze(weights, -1)
    if have > rank:
        return tf.reshape(weights, [-1]) if rank == 1 else None
    return (
        tf.reshape(weights, tf.concat([tf.shape(weights), tf.ones([rank - have], tf.int32)], 0))
        if have < rank
        else weights
    )


def _covers(shape, leading):
    """Whether a weight or mask of `shape` gives one value per element of the `leading` shape
    (rather than one per example, as [batch] or [batch, 1] do)."""
    shape = tuple(shape)
    if len(shape) == len(leading) + 1 and shape[-1] == 1:
        shape = shape[:-1]
    return len(shape) == len(leading) and all(
        a == b or (a is None and b != 1) or (b is None and a != 1) for a, b in zip(shape, leading)
    )


class ElementWeights:
    """How one batch's per-element terms `[...]` (the leading shape of the student's logits) are
    reduced to the scalar that is differentiated and reported.

    Two cases, so that classifiers keep Keras's and tfkd's first convention exactly:

    * no mask (a classifier, or a sequence with neither padding nor ignored labels): the
      weighted sum divided by the global number of elements (`tf.nn.compute_average_loss`),
      `sample_weight` [batch] scaling each example as Keras's `sum_over_batch_size` does;
    * a mask (a sequence with `sample_weight` [batch, time], a `padding_mask` input or labels
      of -100): the weighted sum divided by the global sum of the weights across replicas,
      i.e. by the global number of valid tokens. A per-example `sample_weight` [batch] still
      scales its sequence's tokens without entering the divisor.

    Attributes:
      weights: float [...] per-element weights of the numerator (None: every element 1).
      mask: float [...] in {0, 1}, the valid elements (None: every element valid).
      normalizer: float scalar, this replica's divisor (None in the first case).
      sample_weight: what the compiled metrics receive as `sample_weight`.
    """

    def __init__(self, weights=None, mask=None, normalizer=None, sample_weight=None):
        self.weights, self.mask, self.normalizer = weights, mask, normalizer
        self.sample_weight = sample_weight

    @classmethod
    def from_batch(cls, inputs, labels, sample_weight, logits):
        """The weights of one batch; returns (weights, labels made safe for cross-entropy).

        Per-token weights (outputs [batch, time, K], rank >= 2 before the classes) come from, in
        this order: `sample_weight` of the full leading shape; else the `padding_mask` entry of
        a dict input (KerasHub's preprocessors); and always from the labels, those equal to -100
        masked out and replaced by 0 so that cross-entropy and every target can read them.
        Classifier outputs [batch, K] read `sample_weight` only, as Keras does.
        """
        rank = len(logits.shape) - 1
        if rank < 2:
            return cls(weights=sample_weight, sample_weight=sample_weight), labels
        masks = []
        if (
            labels is not None
            and not isinstance(labels, dict)
            and tf.as_dtype(getattr(labels, "dtype", tf.float32)).is_integer
        ):
            labels = losses.leading_labels(labels, logits)
            if len(labels.shape) == rank:
                ignored = tf.equal(labels, IGNORE_LABEL)
                masks.append(1.0 - tf.cast(ignored, tf.float32))
                labels = tf.where(ignored, tf.zeros_like(labels), labels)
        per_token = None
        leading = tuple(logits.shape[:-1])
        if sample_weight is not None and _covers(sample_weight.shape, leading):
            per_token = _to_rank(sample_weight, rank)
        padding = inputs.get("padding_mask") if isinstance(inputs, dict) else None
        if per_token is None and padding is not None and _covers(padding.shape, leading):
            masks.append(_to_rank(padding, rank))
        mask = None
        for part in masks:
            mask = part if mask is None else mask * part
        if per_token is not None:
            weights = per_token if mask is None else per_token * mask
            mask = tf.cast(weights > 0, tf.float32)
            normalizer = tf.reduce_sum(weights)
        elif mask is not None:
            weights = mask if sample_weight is None else _to_rank(sample_weight, rank) * mask
            normalizer = tf.reduce_sum(mask)
        else:
            return cls(weights=sample_weight, sample_weight=sample_weight), labels
        return cls(weights, mask, normalizer, sample_weight=weights), labels

    def _weighted(self, values):
        values = tf.cast(values, tf.float32)
        if self.weights is None:
            return values
        weights = _to_rank(self.weights, len(values.shape))
        return values if weights is None else values * weights

    def global_mean(self, values):
        """The scalar to differentiate from per-element `values` [...]: the weighted sum over
        this replica divided by the global divisor, so that Keras's sum of the replicas'
        gradients is the gradient of the global mean (2 replicas take the step 1 replica
        takes)."""
        weighted = self._weighted(values)
        if self.normalizer is None:
            return tf.nn.compute_average_loss(tf.reshape(weighted, [-1]))
        return tf.math.divide_no_nan(tf.reduce_sum(weighted), _global_sum(self.normalizer))

    def local_mean(self, values):
        """(this replica's weighted mean of `values` [...], its weight): what a `Mean` metric
        updated on every replica and batch turns into the global mean."""
        weighted = self._weighted(values)
        if self.normalizer is None:
            return tf.reduce_mean(weighted), tf.cast(tf.size(weighted), tf.float32)
        return tf.math.divide_no_nan(tf.reduce_sum(weighted), self.normalizer), self.normalizer


def global_mean(per_example, sample_weight=None):
    """Mean over the global batch of per-element values [batch] or [batch, time]: the weighted
    sum over this replica divided by the global number of elements (no `sample_weight`, or a
    per-example one as Keras's `sum_over_batch_size`) or by the global sum of a per-token
    `sample_weight` [batch, time] (the mask of valid tokens).

    Keras sums gradients across replicas, so dividing by a global quantity (what
    `tf.nn.compute_average_loss` and Keras's own `Loss` objects do) makes 2 replicas take the
    same step as 1 replica on the same global batch.
    """
    per_example = tf.convert_to_tensor(per_example)
    if (
        sample_weight is not None
        and len(per_example.shape) >= 2
        and len(sample_weight.shape) >= len(per_example.shape)
    ):
        weights = _to_rank(sample_weight, len(per_example.shape))
        return ElementWeights(weights, normalizer=tf.reduce_sum(weights)).global_mean(per_example)
    return ElementWeights(weights=sample_weight).global_mean(per_example)


def replica_rows(local_size):
    """(offset, global batch size): this replica holds rows [offset, offset + local_size) of
    the global batch, the concatenation of the replicas' batches in replica order.

    Uneven splits (a final partial batch) are handled: the sizes are exchanged, not assumed.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tf.constant(0, local_size.dtype), local_size
    sizes = context.all_gather(tf.reshape(local_size, [1]), axis=0)  # [replicas]
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
    return tf.reduce_sum(sizes[:replica]), tf.reduce_sum(sizes)
