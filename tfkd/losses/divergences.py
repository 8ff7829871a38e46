"""Language-model divergences, per token on the vocabulary distribution `[..., V]` -> `[...]`:
forward and reverse KL, the generalized Jensen-Shannon divergence (`DIVERGENCES`, `divergence`)
and the forward KL from a teacher's stored top-k log-probabilities (`sparse_topk_kl`)."""

import functools
import math

from keras import ops

from tfkd.registry import Registry

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
    tail=True,
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
    `tail` may also be the teacher's stored tail mass 1 - sum_{top-k} p_T,i, float [...],
    computed at full precision when the top-k were stored (float16 log-probabilities sum to
    it only within about 1e-3).
    A student tail below about 1e-7 is read as 1e-7 (float32 cannot tell 1 - q from 1 there).

    Args:
      teacher_topk_ids: int [..., k], the stored token ids (distinct).
      teacher_topk_logprobs: float [..., k], the teacher's log-probabilities of those tokens
        at temperature 1, from the full vocabulary (float16 is read as float32).
      student_logits: float [..., V].
      temperature: T > 0; tail: whether to add the tail bucket term (True computes the
        teacher's tail mass from the top-k), or the stored tail mass, float [...].
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

    stored_tail = tail is not True and tail is not False
    if stored_tail:
        teacher_tail_mass = ops.cast(ops.convert_to_tensor(tail), dtype)
        teacher_tail_exists = teacher_tail_mass > 0 if has_tail else None
    else:
        log_topk_mass = ops.logsumexp(log_teacher, axis=-1)
        teacher_tail_exists = log_topk_mass < 0 if has_tail else None
    log_scaled = log_teacher / temperature
    if has_tail:
        if stored_tail:
            log_teacher_tail = ops.log(
                ops.where(teacher_tail_exists, teacher_tail_mass, ops.ones_like(teacher_tail_mass))
            )
        else:
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
    if has_tail and tail is not False:
        log_teacher_tail_tempered = log_scaled_tail - log_normaliser
        log_student_tail = _log1mexp(
            ops.minimum(ops.logsumexp(log_student, axis=-1), _LOG_MASS_CEILING)
        )
        tail_term = ops.exp(log_teacher_tail_tempered) * (
            log_teacher_tail_tempered - log_student_tail
        )
        value = value + ops.where(teacher_tail_exists, tail_term, ops.zeros_like(tail_term))
    return temperature**2 * value
