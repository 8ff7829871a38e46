"""Decoupled knowledge distillation (Zhao et al., 2022): the target and non-target terms of
the KD loss, weighted apart, on `[..., K]` logits."""

from keras import ops

from tfkd.losses.soft_targets import leading_labels

# mdistiller's mask: subtracted from the target logit / T so that it drops out of a softmax over
# the non-target classes (exp(-1000) is 0 in float32 while the target leads the others by < ~900).
TARGET_MASK = 1000.0


def decoupled_kd(
    labels,
    student_logits,
    teacher_logits,
    temperature: float = 4.0,
    tckd_weight: float = 1.0,
    nckd_weight: float = 8.0,
):
    """Decoupled knowledge distillation per element: [..., K] logits -> [...].

    T^2 * (tckd_weight * KL(b_t || b_s) + nckd_weight * KL(q_t || q_s)), where for the
    temperature softmax p = softmax(z / T) of either model, b = (p_target, 1 - p_target) is the
    binary target / non-target split (TCKD) and q = softmax over the non-target classes of z / T
    (NCKD). Hinton's KD is the special case KL(p_t || p_s) = TCKD + (1 - p_t,target) * NCKD.

    Everything is computed from log-softmax and logsumexp pieces, never from log(p), so that
    confident models (logits of magnitude 100) give finite values and gradients. Per example this
    equals mdistiller's `dkd_loss`, whose scalar is the batch mean of this vector.

    Args:
      labels: int [...] true classes, the leading shape of the logits (a trailing axis of 1,
        as Keras gives classifier labels [batch, 1], is dropped).
      student_logits, teacher_logits: float [..., K], K >= 2.
      temperature: T > 0; tckd_weight (alpha in the paper), nckd_weight (beta): >= 0.
    Returns:
      float [...].

    References:
      Zhao, Cui, Song, Qiu, Liang, "Decoupled Knowledge Distillation", CVPR 2022.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if tckd_weight < 0 or nckd_weight < 0:
        raise ValueError(
            f"tckd_weight and nckd_weight must be >= 0, got {tckd_weight} and {nckd_weight}"
        )
    student_logits = ops.convert_to_tensor(student_logits)
    teacher_logits = ops.cast(ops.convert_to_tensor(teacher_logits), student_logits.dtype)
    num_classes = student_logits.shape[-1]
    target_mask = ops.one_hot(
        leading_labels(labels, student_logits), num_classes, dtype=student_logits.dtype
    )

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
    nckd = ops.sum(ops.exp(teacher_non_target) * (teacher_non_target - student_non_target), axis=-1)
    return temperature**2 * (tckd_weight * tckd + nckd_weight * nckd)


# Added to the product of norms in the Pearson denominator, as in DIST's official code.
