"""Logit standardization (Sun et al., CVPR 2024): z-scored logits before the temperature softmax.

KD's shared temperature asks the student to match the teacher's logit range as well as their
relations; z-scoring each logit vector of the teacher and of the student first removes the range
(mean and spread) and keeps the relations. Distillers apply it with `logit_standardization=True`
(`--logit_standardization` for kd, dkd, aver, ebkd and ca_mkd) to the logits of the distillation
term only: the cross-entropy and the multi-teacher weights read the raw logits.
"""

from keras import ops

# The official code's epsilon, added to the standard deviation (not under the square root).
STANDARDIZATION_EPSILON = 1e-7


def standardize_logits(logits, epsilon=STANDARDIZATION_EPSILON):
    """Each logit vector z-scored over the last axis: (z - mean(z)) / (epsilon + std(z)).

    As in the official code (sunshangquan/logit-standardization-KD, `normalize` in
    mdistiller/distillers/KD.py and DKD.py): the standard deviation is PyTorch's default
    `Tensor.std`, the unbiased one (ddof = 1, divided by K - 1), and epsilon = 1e-7 is added to
    it. The paper's equation writes the population standard deviation (divided by K); the two
    differ by the constant factor sqrt((K - 1) / K), which a temperature absorbs.

    Args:
      logits: float [..., K], K >= 2.
      epsilon: >= 0, added to the standard deviation so that a constant vector gives 0, not NaN.
    Returns:
      float [..., K], each vector of mean 0 and (unbiased) standard deviation ~1.

    References:
      Sun, Ren, Li, Wang, Cao, "Logit Standardization in Knowledge Distillation", CVPR 2024.
    """
    if epsilon < 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    logits = ops.convert_to_tensor(logits)
    count = logits.shape[-1]
    if count is not None and count < 2:
        raise ValueError(
            f"logit standardization needs K >= 2 logits, got shape {tuple(logits.shape)}"
        )
    centred = logits - ops.mean(logits, axis=-1, keepdims=True)
    count = ops.cast(ops.shape(logits)[-1], logits.dtype)
    deviation = ops.sqrt(ops.sum(ops.square(centred), axis=-1, keepdims=True) / (count - 1.0))
    return centred / (epsilon + deviation)
