"""Per-token divergences of next-token distributions and their reduction over valid tokens.

Every divergence maps logits `[..., V]` (teacher first, then student, then temperature) to
`[...]`; `masked_global_mean` turns a `[batch, time]` term into the sum over valid tokens divided
by the number of valid tokens of the global batch (all replicas), so one step on N replicas is
the step on one replica whatever the split of the valid tokens.
"""

import math

import tensorflow as tf
from keras import ops

DIVERGENCE_NAMES = ("forward_kl", "reverse_kl", "jsd")


def _log_probs(logits, temperature):
    return ops.log_softmax(ops.cast(logits, "float32") / temperature, axis=-1)


def _kl_from_log_probs(log_p, log_q):
    """KL(p || q) = sum p (log p - log q) over the last axis, from log-probabilities."""
    return ops.sum(ops.exp(log_p) * (log_p - log_q), axis=-1)


def forward_kl(teacher_logits, student_logits, temperature=1.0):
    """T^2 * KL(p_T || p_S), p = softmax(z / T): [..., V] -> [...] (Hinton et al. 2015)."""
    return temperature**2 * _kl_from_log_probs(
        _log_probs(teacher_logits, temperature), _log_probs(student_logits, temperature)
    )


def reverse_kl(teacher_logits, student_logits, temperature=1.0):
    """T^2 * KL(p_S || p_T): [..., V] -> [...] (mode seeking; MiniLLM, Gu et al. 2024)."""
    return temperature**2 * _kl_from_log_probs(
        _log_probs(student_logits, temperature), _log_probs(teacher_logits, temperature)
    )


def generalized_jsd(teacher_logits, student_logits, temperature=1.0, beta=0.5):
    """Generalized Jensen-Shannon divergence of GKD (Agarwal et al. 2024): [..., V] -> [...].

    T^2 * (beta * KL(p_T || M) + (1 - beta) * KL(p_S || M)), M = beta p_T + (1 - beta) p_S.
    beta = 0 and beta = 1 are forward and reverse KL exactly (as TRL special-cases them; the
    formula itself tends to 0 at both ends).
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"jsd_beta must be in [0, 1], got {beta}")
    if beta == 0.0:
        return forward_kl(teacher_logits, student_logits, temperature)
    if beta == 1.0:
        return reverse_kl(teacher_logits, student_logits, temperature)
    log_teacher = _log_probs(teacher_logits, temperature)
    log_student = _log_probs(student_logits, temperature)
    log_mixture = ops.logsumexp(
        ops.stack([log_teacher + math.log(beta), log_student + math.log(1.0 - beta)]), axis=0
    )
    return temperature**2 * (
        beta * _kl_from_log_probs(log_teacher, log_mixture)
        + (1.0 - beta) * _kl_from_log_probs(log_student, log_mixture)
    )


def sparse_topk_kl(
    teacher_topk_log_probs,
    teacher_topk_ids,
    student_logits,
    temperature=1.0,
    teacher_tail_mass=None,
):
    """Forward KL against a teacher known only by its top-k tokens: [..., k], [..., V] -> [...].

    T^2 * (sum_{i in top-k} p_T,i (log p_T,i - log p_S,i) + r_T (log r_T - log r_S)), where
    r_T = 1 - sum_{top-k} p_T is the teacher's tail mass (given, or from the top-k) and r_S the
    student's mass outside the teacher's top-k; `teacher_tail_mass=False` drops the tail bucket.
    With k = V the tail is 0 and this is `forward_kl`.

    Args:
      teacher_topk_log_probs: float [..., k], log softmax(z_T / T) at the teacher's top-k ids.
      teacher_topk_ids: int [..., k].
      student_logits: float [..., V].
      teacher_tail_mass: float [...], None (computed) or False (no tail bucket).
    """
    log_student = _log_probs(student_logits, temperature)
    ids = ops.cast(teacher_topk_ids, "int32")
    student_topk = ops.take_along_axis(log_student, ids, axis=-1)
    log_teacher = ops.cast(teacher_topk_log_probs, "float32")
    teacher_probs = ops.exp(log_teacher)
    head = ops.sum(teacher_probs * (log_teacher - student_topk), axis=-1)
    if teacher_tail_mass is False:
        return temperature**2 * head
    if teacher_tail_mass is None:
        teacher_tail_mass = 1.0 - ops.sum(teacher_probs, axis=-1)
    teacher_tail = ops.maximum(ops.cast(teacher_tail_mass, "float32"), 0.0)
    student_tail = ops.maximum(1.0 - ops.sum(ops.exp(student_topk), axis=-1), 1e-12)
    present = teacher_tail > 0
    safe_teacher = ops.where(present, teacher_tail, 1.0)
    tail = ops.where(present, teacher_tail * (ops.log(safe_teacher) - ops.log(student_tail)), 0.0)
    return temperature**2 * (head + tail)


def divergence(name, teacher_logits, student_logits, temperature=1.0, beta=0.5):
    """The divergence `name` (forward_kl, reverse_kl or jsd with `beta`), [..., V] -> [...]."""
    if name == "forward_kl":
        return forward_kl(teacher_logits, student_logits, temperature)
    if name == "reverse_kl":
        return reverse_kl(teacher_logits, student_logits, temperature)
    if name == "jsd":
        return generalized_jsd(teacher_logits, student_logits, temperature, beta)
    raise ValueError(f"--divergence must be one of {', '.join(DIVERGENCE_NAMES)}, got {name!r}")


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
