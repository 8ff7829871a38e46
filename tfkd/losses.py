"""Per-example distillation losses and thin Keras wrappers.

Every function takes `[batch, classes]` tensors and returns a `[batch]` tensor; reduction over
the batch (and over replicas under `tf.distribute`) is the caller's job, so that every term is
averaged the same way.
"""
import keras
from keras import ops

from tfkd.registry import Registry

DISTANCES = Registry("distillation distance")


def cross_entropy(labels, logits):
    """Cross-entropy of integer `labels` [batch] under softmax(`logits` [batch, K]) -> [batch]."""
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def soft_cross_entropy(target_probs, logits, temperature: float = 1.0):
    """-sum_k target_k * log softmax(logits / T)_k -> [batch]."""
    log_probs = ops.log_softmax(logits / temperature, axis=-1)
    return -ops.sum(target_probs * log_probs, axis=-1)


def kl_divergence(target_probs, logits, temperature: float = 1.0):
    """KL(target || softmax(logits / T)) -> [batch]; zero-probability targets contribute 0.

    Computed in log space from logits so that tiny student probabilities do not underflow.
    """
    log_probs = ops.log_softmax(logits / temperature, axis=-1)
    safe_target = ops.where(target_probs > 0, target_probs, ops.ones_like(target_probs))
    return ops.sum(target_probs * (ops.log(safe_target) - log_probs), axis=-1)


@DISTANCES.register("kl")
def distillation_kl(target_probs, logits, temperature: float):
    """Hinton et al. (2015): T^2 * KL(target || softmax(logits / T)).

    The T^2 factor keeps the gradient scale of the soft term independent of T.
    """
    return temperature**2 * kl_divergence(target_probs, logits, temperature)


@DISTANCES.register("cross_entropy")
def distillation_cross_entropy(target_probs, logits, temperature: float):
    """T^2 * cross-entropy against a soft target (label smoothing uses it at T = 1)."""
    return temperature**2 * soft_cross_entropy(target_probs, logits, temperature)


def kd_loss(labels, student_logits, teacher_logits, temperature: float = 4.0,
            alpha: float = 0.9):
    """Per-example Hinton KD loss [batch]:
    (1 - alpha) * CE(y, z_s) + alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)).
    """
    teacher_probs = ops.softmax(teacher_logits / temperature, axis=-1)
    return ((1.0 - alpha) * cross_entropy(labels, student_logits)
            + alpha * distillation_kl(teacher_probs, student_logits, temperature))


@keras.saving.register_keras_serializable(package="tfkd")
class DistillationLoss(keras.losses.Loss):
    """`y_true` = teacher logits, `y_pred` = student logits; T^2 * KL of the temperature softmaxes.

    A Keras `Loss`, so reduction, sample weights and replica scaling are Keras's own.
    """

    def __init__(self, temperature=4.0, name="distillation_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.temperature = temperature

    def call(self, y_true, y_pred):
        target = ops.softmax(ops.convert_to_tensor(y_true) / self.temperature, axis=-1)
        return distillation_kl(target, y_pred, self.temperature)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


# ---- losses from later papers -------------------------------------------------------------------
# mdistiller's mask: subtracted from the target logit / T so that it drops out of a softmax over
# the non-target classes (exp(-1000) is 0 in float32 while the target leads the others by < ~900).
TARGET_MASK = 1000.0


def decoupled_kd(labels, student_logits, teacher_logits, temperature: float = 4.0,
                 tckd_weight: float = 1.0, nckd_weight: float = 8.0):
    """Decoupled knowledge distillation per example [batch].

    T^2 * (tckd_weight * KL(b_t || b_s) + nckd_weight * KL(q_t || q_s)), where for the
    temperature softmax p = softmax(z / T) of either model, b = (p_target, 1 - p_target) is the
    binary target / non-target split (TCKD) and q = softmax over the non-target classes of z / T
    (NCKD). Hinton's KD is the special case KL(p_t || p_s) = TCKD + (1 - p_t,target) * NCKD.

    Everything is computed from log-softmax and logsumexp pieces, never from log(p), so that
    confident models (logits of magnitude 100) give finite values and gradients. Per example this
    equals mdistiller's `dkd_loss`, whose scalar is the batch mean of this vector.

    Args:
      labels: int [batch] (or [batch, 1]) true classes.
      student_logits, teacher_logits: float [batch, K], K >= 2.
      temperature: T > 0; tckd_weight (alpha in the paper), nckd_weight (beta): >= 0.
    Returns:
      float [batch].

    References:
      Zhao, Cui, Song, Qiu, Liang, "Decoupled Knowledge Distillation", CVPR 2022.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if tckd_weight < 0 or nckd_weight < 0:
        raise ValueError(f"tckd_weight and nckd_weight must be >= 0, got {tckd_weight} and "
                         f"{nckd_weight}")
    student_logits = ops.convert_to_tensor(student_logits)
    teacher_logits = ops.cast(ops.convert_to_tensor(teacher_logits), student_logits.dtype)
    num_classes = student_logits.shape[-1]
    target_mask = ops.one_hot(ops.reshape(ops.cast(labels, "int32"), (-1,)), num_classes,
                              dtype=student_logits.dtype)

    def log_pieces(logits):
        scaled = logits / temperature
        log_all = ops.logsumexp(scaled, axis=-1)
        masked = scaled - TARGET_MASK * target_mask
        log_others = ops.logsumexp(masked, axis=-1)
        log_target = ops.sum(scaled * target_mask, axis=-1) - log_all
        # log b = (log p_target, log(1 - p_target)); log(1 - p_target) as a difference of
        # logsumexps stays exact when p_target is within float epsilon of 1.
        log_binary = ops.stack([log_target, log_others - log_all], axis=-1)
        log_non_target = masked - ops.expand_dims(log_others, -1)
        return log_binary, log_non_target

    teacher_binary, teacher_non_target = log_pieces(teacher_logits)
    student_binary, student_non_target = log_pieces(student_logits)
    tckd = ops.sum(ops.exp(teacher_binary) * (teacher_binary - student_binary), axis=-1)
    # The target entry of q_t is exp(-1000 - ...) = 0, so it adds nothing here.
    nckd = ops.sum(ops.exp(teacher_non_target) * (teacher_non_target - student_non_target),
                   axis=-1)
    return temperature**2 * (tckd_weight * tckd + nckd_weight * nckd)


# Added to the product of norms in the Pearson denominator, as in DIST's official code.
PEARSON_EPSILON = 1e-8


def _gather_over_replicas(value):
    """`value` [local batch, ...] -> [global batch, ...] inside a replica context with more than
    one replica (gradients flow back to each replica's own slice); unchanged otherwise."""
    import tensorflow as tf

    if tf.distribute.in_cross_replica_context():
        return value
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_gather(value, axis=0)


def _mean_pearson_rows(a, b):
    """Mean over rows of the Pearson correlation of rows of `a` and `b` [rows, n] -> scalar."""
    a = a - ops.mean(a, axis=1, keepdims=True)
    b = b - ops.mean(b, axis=1, keepdims=True)
    norms = ops.sqrt(ops.sum(ops.square(a), axis=1)) * ops.sqrt(ops.sum(ops.square(b), axis=1))
    return ops.mean(ops.sum(a * b, axis=1) / (norms + PEARSON_EPSILON))


def dist_loss(student_logits, teacher_logits, temperature=1.0, inter_weight=1.0,
              intra_weight=1.0):
    """DIST: relations between the predictions instead of their exact values -> scalar.

    T^2 * (inter_weight * (1 - mean over examples of Pearson(p_s[i, :], p_t[i, :]))
           + intra_weight * (1 - mean over classes of Pearson(p_s[:, k], p_t[:, k]))),
    p = softmax(z / T). The intra-class term correlates each class's probabilities across the
    batch, so it is a statistic of the whole batch, not a sum over examples: the function returns
    a scalar, not a [batch] vector.

    Matches the official code (hunto/image_classification_sota, lib/models/losses/dist_kd.py):
    Pearson(a, b) = <a - mean a, b - mean b> / (||a - mean a|| * ||b - mean b|| + 1e-8), the
    epsilon added to the product of the norms; inter_weight and intra_weight are its beta and
    gamma, temperature its tau. No difference in the formula.

    Under tf.distribute, inside a replica context with more than one replica, both softmaxes are
    all-gathered over the batch axis first, so every replica returns the scalar one replica would
    return on the global batch. Keras sums gradients across replicas and the gather's gradient
    already sums every replica's contribution, so a distiller must differentiate
    `dist_loss(...) / num_replicas_in_sync` (see `replica_scaled`) to take the 1-replica step.

    Args:
      student_logits, teacher_logits: float [batch, K]; batch >= 2 and K >= 2 for the
        correlations to be defined.
      temperature: T > 0; inter_weight (beta), intra_weight (gamma): >= 0.
    Returns:
      float scalar.

    References:
      Huang, You, Wang, Qian, Xu, "Knowledge Distillation from A Stronger Teacher",
      NeurIPS 2022.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if inter_weight < 0 or intra_weight < 0:
        raise ValueError(f"inter_weight and intra_weight must be >= 0, got {inter_weight} and "
                         f"{intra_weight}")
    student_logits = ops.convert_to_tensor(student_logits)
    teacher_logits = ops.cast(ops.convert_to_tensor(teacher_logits), student_logits.dtype)
    student_probs = _gather_over_replicas(ops.softmax(student_logits / temperature, axis=-1))
    teacher_probs = _gather_over_replicas(ops.softmax(teacher_logits / temperature, axis=-1))
    inter = 1.0 - _mean_pearson_rows(student_probs, teacher_probs)
    intra = 1.0 - _mean_pearson_rows(ops.transpose(student_probs), ops.transpose(teacher_probs))
    return temperature**2 * (inter_weight * inter + intra_weight * intra)


def replica_scaled(batch_loss):
    """A scalar computed on the global batch (e.g. `dist_loss`), divided by the replica count.

    Keras sums gradients across replicas; a batch-level loss that every replica computes in
    full would otherwise count num_replicas_in_sync times.
    """
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return batch_loss / replicas if replicas > 1 else batch_loss
