"""Per-element distillation losses and thin Keras wrappers.

Every function maps `[..., K]` logits (or probabilities) to `[...]` values, optax's contract: the
same function serves `[batch, K]` classifiers (-> `[batch]`) and `[batch, time, K]` sequence
outputs (-> `[batch, time]`); integer labels have the leading shape `[...]`. Reduction over the
elements (masks, sample weights, replicas under `tf.distribute`) is the distiller's job
(`tfkd.distillers.distiller`), so that every term is averaged the same way. The exception is DIST's
`dist_loss`, a statistic of a whole batch, which returns a scalar; the distiller gathers the
global batch and passes it in.

Functions that read a teacher and a student take the teacher first, then the student, then the
temperature, except the classifier losses kept from the first release (`kd_loss`,
`decoupled_kd`, `dist_loss`), whose order the README shows.
"""

import functools
import math

import keras
from keras import ops

from tfkd.registry import Registry

DISTANCES = Registry("distillation distance")


def leading_labels(labels, logits):
    """Integer `labels` as an int32 tensor of the leading shape `[...]` of `logits` [..., K].

    A trailing axis of 1 (Keras's classifier labels [batch, 1]) is dropped when the labels have
    as many axes as the logits.
    """
    labels = ops.convert_to_tensor(labels)
    if len(labels.shape) == len(logits.shape) and labels.shape[-1] == 1:
        labels = ops.squeeze(labels, axis=-1)
    return ops.cast(labels, "int32")


def cross_entropy(labels, logits):
    """Cross-entropy of integer `labels` [...] under softmax(`logits` [..., K]) -> [...]."""
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def soft_cross_entropy(target_probs, logits, temperature: float = 1.0):
    """-sum_k target_k * log softmax(logits / T)_k: [..., K] -> [...]."""
    log_probs = ops.log_softmax(logits / temperature, axis=-1)
    return -ops.sum(target_probs * log_probs, axis=-1)


def kl_divergence(target_probs, logits, temperature: float = 1.0):
    """KL(target || softmax(logits / T)): [..., K] -> [...]; zero-probability targets
    contribute 0.

    Computed in log space from logits so that tiny student probabilities do not underflow.
    """
    log_probs = ops.log_softmax(logits / temperature, axis=-1)
    safe_target = ops.where(target_probs > 0, target_probs, ops.ones_like(target_probs))
    return ops.sum(target_probs * (ops.log(safe_target) - log_probs), axis=-1)


@DISTANCES.register("kl")
def distillation_kl(target_probs, logits, temperature: float):
    """Hinton et al. (2015): T^2 * KL(target || softmax(logits / T)), [..., K] -> [...].

    The T^2 factor keeps the gradient scale of the soft term independent of T.
    """
    return temperature**2 * kl_divergence(target_probs, logits, temperature)


@DISTANCES.register("cross_entropy")
def distillation_cross_entropy(target_probs, logits, temperature: float):
    """T^2 * cross-entropy against a soft target, [..., K] -> [...] (label smoothing uses it
    at T = 1)."""
    return temperature**2 * soft_cross_entropy(target_probs, logits, temperature)


def kd_loss(labels, student_logits, teacher_logits, temperature: float = 4.0, alpha: float = 0.9):
    """Per-element Hinton KD loss, [..., K] logits and [...] labels -> [...]:
    (1 - alpha) * CE(y, z_s) + alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)).
    """
    teacher_probs = ops.softmax(teacher_logits / temperature, axis=-1)
    return (1.0 - alpha) * cross_entropy(labels, student_logits) + alpha * distillation_kl(
        teacher_probs, student_logits, temperature
    )


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
PEARSON_EPSILON = 1e-8


def _mean_pearson_rows(a, b, weights=None):
    """Mean over rows of the Pearson correlation of rows of `a` and `b` [rows, n] -> scalar;
    `weights` [rows] (None: every row counts once) weigh the rows in the mean."""
    a = a - ops.mean(a, axis=1, keepdims=True)
    b = b - ops.mean(b, axis=1, keepdims=True)
    norms = ops.sqrt(ops.sum(ops.square(a), axis=1)) * ops.sqrt(ops.sum(ops.square(b), axis=1))
    correlations = ops.sum(a * b, axis=1) / (norms + PEARSON_EPSILON)
    if weights is None:
        return ops.mean(correlations)
    return ops.divide_no_nan(ops.sum(weights * correlations), ops.sum(weights))


def _mean_pearson_columns(a, b, weights=None):
    """Mean over columns of the Pearson correlation of columns of `a` and `b` [rows, n], each
    column's correlation taken over the rows of nonzero weight -> scalar."""
    if weights is None:
        return _mean_pearson_rows(ops.transpose(a), ops.transpose(b))
    weights = ops.expand_dims(weights, -1)
    count = ops.sum(weights)
    a = (a - ops.divide_no_nan(ops.sum(weights * a, axis=0, keepdims=True), count)) * weights
    b = (b - ops.divide_no_nan(ops.sum(weights * b, axis=0, keepdims=True), count)) * weights
    norms = ops.sqrt(ops.sum(ops.square(a), axis=0)) * ops.sqrt(ops.sum(ops.square(b), axis=0))
    return ops.mean(ops.sum(a * b, axis=0) / (norms + PEARSON_EPSILON))


def _rows(values):
    """[..., K] -> [rows, K], one row per element of the leading shape."""
    if len(values.shape) == 2:
        return values
    classes = values.shape[-1] if values.shape[-1] is not None else ops.shape(values)[-1]
    return ops.reshape(values, (-1, classes))


def dist_loss(
    student_logits,
    teacher_logits,
    temperature: float = 1.0,
    inter_weight: float = 1.0,
    intra_weight: float = 1.0,
    weights=None,
):
    """DIST: relations between the predictions instead of their exact values -> scalar.

    T^2 * (inter_weight * (1 - mean over rows of Pearson(p_s[i, :], p_t[i, :]))
           + intra_weight * (1 - mean over classes of Pearson(p_s[:, k], p_t[:, k]))),
    p = softmax(z / T). The intra-class term correlates each class's probabilities across the
    rows of the batch, so it is a statistic of the whole batch, not a sum over elements: the
    function returns a scalar, not a [batch] vector.

    The rows are the elements of the leading shape: [batch, K] logits give one row per example,
    [batch, time, K] logits one row per token (the leading axes are flattened), so on sequences
    DIST reduces over tokens, every valid token of the batch counting once in both terms.
    `weights` (0/1 per element, e.g. the padding mask) leave rows out: a row of weight 0 is in
    neither mean nor in the per-class correlations.

    Matches the official code (hunto/image_classification_sota, lib/models/losses/dist_kd.py):
    Pearson(a, b) = <a - mean a, b - mean b> / (||a - mean a|| * ||b - mean b|| + 1e-8), the
    epsilon added to the product of the norms; inter_weight and intra_weight are its beta and
    gamma, temperature its tau. No difference in the formula.

    The function reads the batch it is given: under tf.distribute the distiller gathers the
    global batch first (`tfkd.distillers.distiller.gather_global_batch`) and differentiates
    `replica_scaled(dist_loss(...))`, so that 2 replicas take the step 1 replica takes.

    Args:
      student_logits, teacher_logits: float [..., K]; at least 2 rows and K >= 2 for the
        correlations to be defined.
      temperature: T > 0; inter_weight (beta), intra_weight (gamma): >= 0.
      weights: None, or float [...] in {0, 1}: the rows that count.
    Returns:
      float scalar.

    References:
      Huang, You, Wang, Qian, Xu, "Knowledge Distillation from A Stronger Teacher",
      NeurIPS 2022.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if inter_weight < 0 or intra_weight < 0:
        raise ValueError(
            f"inter_weight and intra_weight must be >= 0, got {inter_weight} and {intra_weight}"
        )
    student_logits = ops.convert_to_tensor(student_logits)
    teacher_logits = ops.cast(ops.convert_to_tensor(teacher_logits), student_logits.dtype)
    student_probs = _rows(ops.softmax(student_logits / temperature, axis=-1))
    teacher_probs = _rows(ops.softmax(teacher_logits / temperature, axis=-1))
    if weights is not None:
        weights = ops.reshape(ops.cast(weights, student_probs.dtype), (-1,))
    inter = 1.0 - _mean_pearson_rows(student_probs, teacher_probs, weights)
    intra = 1.0 - _mean_pearson_columns(student_probs, teacher_probs, weights)
    return temperature**2 * (inter_weight * inter + intra_weight * intra)


# ---- language-model divergences -----------------------------------------------------------------
# Per token on the vocabulary distribution, [..., V] logits -> [...], teacher first, then
# student, then temperature; each times T^2 as `kd`, so that switching the divergence does not
# change the gradient scale (at TRL's default T = 1 the factor is 1).
DIVERGENCES = Registry("divergence")


def _tempered_log_probs(teacher_logits, student_logits, temperature):
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    student_logits = ops.convert_to_tensor(student_logits)
    teacher_logits = ops.cast(ops.convert_to_tensor(teacher_logits), student_logits.dtype)
    return (
        ops.log_softmax(teacher_logits / temperature, axis=-1),
        ops.log_softmax(student_logits / temperature, axis=-1),
    )


def _kl_from_log_probs(log_p, log_q):
    """KL(p || q) from log-probabilities [..., V] -> [...]; entries with p = 0 add 0 (also where
    a logit is -inf and log p is -inf, which would otherwise give 0 * inf)."""
    p = ops.exp(log_p)
    difference = ops.where(p > 0, log_p - log_q, ops.zeros_like(log_p))
    return ops.sum(p * difference, axis=-1)


@DIVERGENCES.register("forward_kl")
def forward_kl(teacher_logits, student_logits, temperature: float = 1.0):
    """Forward KL, T^2 * KL(p_T || p_S) with p = softmax(z / T): [..., V] -> [...].

    Mass-covering: the student is pushed to put mass wherever the teacher does. Equal to
    `distillation_kl(softmax(teacher_logits / T), student_logits, T)`, Hinton's KD term, but
    computed from the teacher's log-softmax, so that a teacher probability below float
    precision does not become log 0.

    Args:
      teacher_logits, student_logits: float [..., V]; temperature: T > 0.
    Returns:
      float [...].

    References:
      Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network", 2015.
    """
    log_teacher, log_student = _tempered_log_probs(teacher_logits, student_logits, temperature)
    return temperature**2 * _kl_from_log_probs(log_teacher, log_student)


@DIVERGENCES.register("reverse_kl")
def reverse_kl(teacher_logits, student_logits, temperature: float = 1.0):
    """Reverse KL, T^2 * KL(p_S || p_T) with p = softmax(z / T): [..., V] -> [...].

    Mode-seeking: the student is penalised for mass where the teacher has little, as in MiniLLM
    and on-policy distillation. Gradients reach the student through both p_S factors.

    Args:
      teacher_logits, student_logits: float [..., V]; temperature: T > 0.
    Returns:
      float [...].

    References:
      Gu, Dong, Wei, Huang, "MiniLLM: Knowledge Distillation of Large Language Models",
      ICLR 2024.
    """
    log_teacher, log_student = _tempered_log_probs(teacher_logits, student_logits, temperature)
    return temperature**2 * _kl_from_log_probs(log_student, log_teacher)


@DIVERGENCES.register("jsd")
def generalized_jsd(teacher_logits, student_logits, temperature: float = 1.0, beta: float = 0.5):
    """Generalized Jensen-Shannon divergence JSD(beta) of GKD: [..., V] -> [...].

    T^2 * (beta * KL(p_T || M) + (1 - beta) * KL(p_S || M)), M = beta p_T + (1 - beta) p_S,
    p = softmax(z / T), log M computed as a logsumexp of the two log-probabilities, so that
    neither is exponentiated to 0 and logged back. beta = 0 and beta = 1 are special-cased, as
    TRL's `GKDTrainer.generalized_jsd_loss` does, to exactly the forward KL(p_T || p_S)
    (`forward_kl`) and the reverse KL(p_S || p_T) (`reverse_kl`); the formula's own limits there
    are 0. beta = 0.5 is the symmetric Jensen-Shannon divergence.

    TRL applies no T^2; at T != 1 this is T^2 times TRL's per-token value.

    Args:
      teacher_logits, student_logits: float [..., V]; temperature: T > 0;
      beta: a number in [0, 1].
    Returns:
      float [...].

    References:
      Agarwal, Vieillard, Zhou, Stanczyk, Ramos, Geist, Bachem, "On-Policy Distillation of
      Language Models: Learning from Self-Generated Mistakes", ICLR 2024, Eq. 1.
    """
    beta = float(beta)
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta (generalized JSD) must be in [0, 1], got {beta}")
    if beta == 0.0:
        return forward_kl(teacher_logits, student_logits, temperature)
    if beta == 1.0:
        return reverse_kl(teacher_logits, student_logits, temperature)
    log_teacher, log_student = _tempered_log_probs(teacher_logits, student_logits, temperature)
    log_mixture = ops.logsumexp(
        ops.stack([log_teacher + math.log(beta), log_student + math.log(1.0 - beta)]), axis=0
    )
    return temperature**2 * (
        beta * _kl_from_log_probs(log_teacher, log_mixture)
        + (1.0 - beta) * _kl_from_log_probs(log_student, log_mixture)
    )


def divergence(name: str, jsd_beta: float = 0.5):
    """The registered divergence `name` as `function(teacher_logits, student_logits,
    temperature) -> [...]`; `jsd_beta` is the beta of "jsd"."""
    function = DIVERGENCES.get(name)
    if function is generalized_jsd:
        return functools.partial(generalized_jsd, beta=jsd_beta)
    return function


# Largest log of a top-k mass treated as below 1: keeps log(1 - mass) finite.
_LOG_MASS_CEILING = -1e-7
_LN2 = math.log(2.0)


def _log1mexp(x):
    """log(1 - exp(x)) for x < 0, accurate on both sides of -ln 2 (Maechler, 2012). Each branch
    reads a safe input, so that the branch not taken gives no NaN gradient."""
    near = x > -_LN2
    near_x = ops.where(near, x, -ops.ones_like(x))
    far_x = ops.where(near, -ops.ones_like(x), x)
    return ops.where(near, ops.log(-ops.expm1(near_x)), ops.log1p(-ops.exp(far_x)))


def sparse_topk_kl(
    teacher_topk_ids,
    teacher_topk_logprobs,
    student_logits,
    temperature: float = 1.0,
    tail: bool = True,
):
    """Forward KL from a teacher's stored top-k log-probabilities: [..., V] -> [...].

    T^2 * (sum_{i in top-k} q_T,i (log q_T,i - log q_S,i) + [tail] q_T,tail (log q_T,tail -
    log q_S,tail)), where q_S = softmax(z_S / T) and q_S,tail = 1 - sum_{top-k} q_S,i is the
    student's mass outside the stored ids. At T = 1, q_T,i = p_T,i, the stored probabilities,
    and q_T,tail = 1 - sum_{top-k} p_T,i, the teacher's missing mass: the top-k terms are
    sum p_T,i (log p_T,i - log p_S,i) and the tail bucket compares the two missing masses
    (DistillKit's missing-probability term). At T != 1 the teacher's tempered probabilities are
    p^(1/T) renormalised, with the missing mass taken as spread uniformly over the V - k tokens
    not stored (DistillKit re-tempers the bucket as if it were one token; the two agree at T = 1).

    With k = V (every token stored) there is no tail and the value equals `forward_kl` exactly.
    With `tail=False` the tail bucket is left out (the top-k terms are not renormalised).
    A student tail below about 1e-7 is read as 1e-7 (float32 cannot tell 1 - q from 1 there).

    Args:
      teacher_topk_ids: int [..., k], the stored token ids (distinct).
      teacher_topk_logprobs: float [..., k], the teacher's log-probabilities of those tokens
        at temperature 1, from the full vocabulary (float16 is read as float32).
      student_logits: float [..., V].
      temperature: T > 0; tail: whether to add the tail bucket term.
    Returns:
      float [...].

    References:
      Arcee AI, DistillKit (sparse KL with missing-probability handling).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    student_logits = ops.convert_to_tensor(student_logits)
    dtype = student_logits.dtype
    vocabulary, k = student_logits.shape[-1], teacher_topk_ids.shape[-1]
    if vocabulary is None or k is None:
        raise ValueError(
            f"sparse_topk_kl needs static sizes of the vocabulary and of k; got "
            f"student logits {tuple(student_logits.shape)} and ids "
            f"{tuple(teacher_topk_ids.shape)}"
        )
    if k > vocabulary:
        raise ValueError(f"top-k of {k} ids for a vocabulary of {vocabulary}")
    ids = ops.cast(teacher_topk_ids, "int32")
    log_teacher = ops.cast(ops.convert_to_tensor(teacher_topk_logprobs), dtype)
    log_student_all = ops.log_softmax(student_logits / temperature, axis=-1)
    log_student = ops.take_along_axis(log_student_all, ids, axis=-1)
    # With every token stored there is no tail, whatever rounding makes of the sum.
    has_tail = k < vocabulary

    log_topk_mass = ops.logsumexp(log_teacher, axis=-1)
    teacher_tail_exists = log_topk_mass < 0 if has_tail else None
    log_scaled = log_teacher / temperature
    if has_tail:
        log_teacher_tail = _log1mexp(ops.minimum(log_topk_mass, _LOG_MASS_CEILING))
        log_missing = math.log(vocabulary - k)
        # Tempered mass of V - k tokens of tail / (V - k) each: (V - k) (tail / (V - k))^(1/T).
        log_scaled_tail = log_missing + (log_teacher_tail - log_missing) / temperature
        log_scaled_tail = ops.where(
            teacher_tail_exists, log_scaled_tail, ops.full_like(log_scaled_tail, -1e30)
        )
        log_normaliser = ops.logsumexp(
            ops.concatenate([log_scaled, ops.expand_dims(log_scaled_tail, -1)], axis=-1), axis=-1
        )
    else:
        log_normaliser = ops.logsumexp(log_scaled, axis=-1)
    log_teacher_tempered = log_scaled - ops.expand_dims(log_normaliser, -1)
    value = ops.sum(ops.exp(log_teacher_tempered) * (log_teacher_tempered - log_student), axis=-1)
    if has_tail and tail:
        log_teacher_tail_tempered = log_scaled_tail - log_normaliser
        log_student_tail = _log1mexp(
            ops.minimum(ops.logsumexp(log_student, axis=-1), _LOG_MASS_CEILING)
        )
        tail_term = ops.exp(log_teacher_tail_tempered) * (
            log_teacher_tail_tempered - log_student_tail
        )
        value = value + ops.where(teacher_tail_exists, tail_term, ops.zeros_like(tail_term))
    return temperature**2 * value


def replica_scaled(batch_loss):
    """A scalar computed on the global batch (e.g. `dist_loss`), divided by the replica count.

    Keras sums gradients across replicas; a batch-level loss that every replica computes in
    full would otherwise count num_replicas_in_sync times.
    """
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return batch_loss / replicas if replicas > 1 else batch_loss
