"""Per-element distillation losses and thin Keras wrappers: `tfkd.losses.<name>`.

Every function maps `[..., K]` logits (or probabilities) to `[...]` values, optax's contract: the
same function serves `[batch, K]` classifiers (-> `[batch]`) and `[batch, time, K]` sequence
outputs (-> `[batch, time]`); integer labels have the leading shape `[...]`. Reduction over the
elements (masks, sample weights, replicas under `tf.distribute`) is the distiller's job
(`tfkd.distillers`), so that every term is averaged the same way. The exception is DIST's
`dist_loss`, a statistic of a whole batch, which returns a scalar; the distiller gathers the
global batch and passes it in.

Functions that read a teacher and a student take the teacher first, then the student, then the
temperature, except the classifier losses kept from the first release (`kd_loss`,
`decoupled_kd`, `dist_loss`), whose order the README shows.
"""

from tfkd.losses.correlation import (
    PEARSON_EPSILON,
    dist_loss,
    replica_scaled,
)
from tfkd.losses.decoupled import (
    TARGET_MASK,
    decoupled_kd,
)
from tfkd.losses.divergences import (
    DIVERGENCES,
    divergence,
    forward_kl,
    generalized_jsd,
    reverse_kl,
    sparse_topk_kl,
)
from tfkd.losses.soft_targets import (
    DISTANCES,
    DistillationLoss,
    cross_entropy,
    distillation_cross_entropy,
    distillation_kl,
    kd_loss,
    kl_divergence,
    leading_labels,
    soft_cross_entropy,
)

__all__ = [
    "DISTANCES",
    "DIVERGENCES",
    "DistillationLoss",
    "PEARSON_EPSILON",
    "TARGET_MASK",
    "cross_entropy",
    "decoupled_kd",
    "dist_loss",
    "distillation_cross_entropy",
    "distillation_kl",
    "divergence",
    "forward_kl",
    "generalized_jsd",
    "kd_loss",
    "kl_divergence",
    "leading_labels",
    "replica_scaled",
    "reverse_kl",
    "soft_cross_entropy",
    "sparse_topk_kl",
]
