"""The reduction of per-token terms over the valid tokens of the global batch.

The per-token divergences themselves are `tfkd.losses.forward_kl`, `reverse_kl`,
`generalized_jsd` and `sparse_topk_kl` ([..., V] logits -> [...]); `masked_global_mean` turns a
`[batch, time]` term into the sum over valid tokens divided by the number of valid tokens of the
global batch (all replicas), so one step on N replicas is the step on one replica whatever the
split of the valid tokens.
"""

import tensorflow as tf
from keras import ops


def cross_replica_sum(value):
    """`value` summed over the replicas in sync (unchanged with one replica), without gradient."""
    value = tf.stop_gradient(value)
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def masked_sums(values, mask):
    """(sum of values * mask, sum of mask) on this replica: [batch, time] -> two scalars."""
    mask = ops.cast(mask, "float32")
    return ops.sum(ops.cast(values, "float32") * mask), ops.sum(mask)


def masked_global_mean(values, mask):
    """Sum over this replica's valid tokens / number of valid tokens of the global batch.

    Keras sums gradients over replicas, so differentiating this on every replica gives the
    gradient of the global per-token mean; a batch without valid tokens gives 0.
    """
    total, count = masked_sums(values, mask)
    return tf.math.divide_no_nan(total, cross_replica_sum(count))
