"""Multi-teacher distillation as pure functions: per-example teacher weights and losses.

K teachers, C classes. Teacher logits are stacked as `[K, ..., C]` (`[K, B, C]` for a batch of B
examples, `[K, B, T, C]` for B sequences of T tokens); weights come back as `[..., K]` and sum to
1 over the teachers for every element: every weighting is computed per example, or per token
from per-token labels `[...]`. Below, B stands for the leading shape `...`.

Weightings (`teacher_weights(..., method)`):
  * `aver`   w_k = 1 / K (You et al., 2017).
  * `ebkd`   w_k = (1 - H_k / sum_j H_j) / (K - 1), H_k the entropy of softmax(z_k): sharper
             predictions weigh more, right or wrong (Kwon et al., 2020, as re-implemented by
             the CA-MKD authors).
  * `ca_mkd` w_k = (1 - softmax_k(L_1..L_K)) / (K - 1), L_k = CE(y, softmax(z_k)): a teacher
             closer to the label weighs more (Zhang et al., CA-MKD, Eq. 1-2).
  * `fixed`  user-given relative weights, normalised to sum to 1.
"""

import dataclasses
from typing import Callable

import numpy as np
from keras import ops

from tfkd import losses
from tfkd.registry import Registry

WEIGHTINGS = Registry("teacher weighting")


@dataclasses.dataclass(frozen=True)
class Weighting:
    """A registered logit weighting.

    weights: `weights(teacher_logits [K, ..., C], labels [...], **options) -> [..., K]`.
    min_teachers: the smallest K it is defined for (2 where it divides by K - 1).
    official_factor: `count -> factor` the authors' code applies to the weighted KD sum
      (`official_scaling=True`).
    options: the keyword options `weights` reads (e.g. `fixed_weights`).
    """

    weights: Callable
    min_teachers: int = 1
    official_factor: Callable = dataclasses.field(default=lambda count: 1.0, compare=False)
    options: tuple = ()

    def __call__(self, teacher_logits, labels, **options):
        return self.weights(teacher_logits, labels, **options)


def register_weighting(name, min_teachers=1, official_factor=None, options=()):
    """Decorator: registers a weights function as the weighting `name`."""

    def register(function):
        WEIGHTINGS.register(
            name,
            Weighting(
                function, min_teachers, official_factor or (lambda count: 1.0), tuple(options)
            ),
        )
        return function

    return register


def min_teachers(weighting):
    """The smallest teacher count the registered `weighting` is defined for."""
    return WEIGHTINGS.get(weighting).min_teachers


def _stack(teacher_logits):
    """A list of K [..., C] tensors or one [K, ..., C] tensor -> float32 [K, ..., C]."""
    if isinstance(teacher_logits, (list, tuple)):
        teacher_logits = ops.stack([ops.convert_to_tensor(z) for z in teacher_logits], axis=0)
    teacher_logits = ops.cast(ops.convert_to_tensor(teacher_logits), "float32")
    if len(teacher_logits.shape) < 3:
        raise ValueError(
            f"teacher_logits must have shape [teachers, batch, ..., classes]; got "
            f"{tuple(teacher_logits.shape)}"
        )
    return teacher_logits


def _teachers_last(per_teacher):
    """[K, ...] -> [..., K]."""
    return ops.moveaxis(per_teacher, 0, -1)


def _count(teacher_logits, method):
    count, minimum = teacher_logits.shape[0], min_teachers(method)
    if count is not None and count < minimum:
        raise ValueError(f"weighting {method!r} needs at least {minimum} teachers; got {count}")
    return count


def confidence_weights(per_teacher_losses):
    """CA-MKD's weights from per-teacher losses [K, ...] -> [..., K]:
    (1 - softmax over the teachers of the losses) / (K - 1). Lower loss, larger weight."""
    count = per_teacher_losses.shape[0]
    weights = (1.0 - ops.softmax(per_teacher_losses, axis=0)) / (count - 1)
    return _teachers_last(weights)


# Their CA-MKD divides the weighted sum by B * K instead of B.
@register_weighting("ca_mkd", min_teachers=2, official_factor=lambda count: 1.0 / count)
def ca_mkd_weights(teacher_logits, labels):
    """[K, ..., C] logits, [...] labels -> [..., K]; L_k = CE(y, softmax(z_k)) per element."""
    per_teacher = ops.stack(
        [losses.cross_entropy(labels, teacher_logits[k]) for k in range(teacher_logits.shape[0])],
        axis=0,
    )
    return confidence_weights(per_teacher)


def entropy(logits):
    """Entropy of softmax(logits) [..., C] -> [...], from log-softmax so that exact zeros in the
    probabilities contribute 0 rather than 0 * log 0 = NaN."""
    log_probs = ops.log_softmax(logits, axis=-1)
    return -ops.sum(ops.exp(log_probs) * log_probs, axis=-1)


# Their EBKD uses the un-normalised weights 1 - H_k / sum_j H_j (summing to K - 1) and divides
# by B * K: (K - 1) / K times the normalised form.
@register_weighting("ebkd", min_teachers=2, official_factor=lambda count: (count - 1) / count)
def ebkd_weights(teacher_logits, labels=None):
    """[K, ..., C] logits -> [..., K]; (1 - H_k / sum_j H_j) / (K - 1). Labels are not used.

    Where every teacher is exactly one-hot (all entropies 0) the ratio is undefined and the
    weights fall back to 1 / K.
    """
    count = teacher_logits.shape[0]
    entropies = entropy(teacher_logits)  # [K, ...]
    total = ops.sum(entropies, axis=0, keepdims=True)
    safe_total = ops.where(total > 0, total, ops.ones_like(total))
    weights = ops.where(
        total > 0, (1.0 - entropies / safe_total) / (count - 1), ops.ones_like(entropies) / count
    )
    return _teachers_last(weights)


@register_weighting("aver")
def average_weights(teacher_logits, labels=None):
    """[K, ..., C] logits -> [..., K] of 1 / K."""
    count = teacher_logits.shape[0]
    return ops.ones_like(_teachers_last(teacher_logits[..., 0])) / count


def check_fixed_weights(fixed_weights, count):
    """Relative per-teacher weights -> float32 [K] summing to 1, or one clear ValueError."""
    if fixed_weights is None:
        raise ValueError("weighting 'fixed' needs fixed_weights, one number per teacher")
    array = np.asarray(fixed_weights, dtype="float32").reshape(-1)
    if count is not None and array.shape[0] != count:
        raise ValueError(
            f"fixed_weights must give one weight per teacher: {count} teachers, "
            f"{array.shape[0]} weights"
        )
    if np.any(array < 0) or not np.all(np.isfinite(array)) or array.sum() <= 0:
        raise ValueError(f"fixed_weights must be finite, >= 0 and not all 0; got {array.tolist()}")
    return array / array.sum()


@register_weighting("fixed", options=("fixed_weights",))
def fixed_weights_of(teacher_logits, labels=None, fixed_weights=None):
    """[K, ..., C] logits -> [..., K], every element's weights the normalised `fixed_weights`."""
    weights = ops.convert_to_tensor(check_fixed_weights(fixed_weights, teacher_logits.shape[0]))
    return ops.ones_like(_teachers_last(teacher_logits[..., 0])) * weights


def teacher_weights(teacher_logits, labels, method, fixed_weights=None):
    """Per-element teacher weights: per example, or per token of a sequence.

    Args:
        teacher_logits: [K, ..., classes] (or a list of K [..., classes]), e.g. [K, batch,
          classes] or [K, batch, time, classes].
        labels: integer labels [...] (only `ca_mkd` reads them; per token for sequences).
        method: `ca_mkd`, `aver`, `ebkd` or `fixed`.
        fixed_weights: for `fixed`, K relative weights (normalised to sum to 1).

    Returns:
        float32 [..., K], summing to 1 over the teachers for every element.
    """
    weighting = WEIGHTINGS.get(method)
    teacher_logits = _stack(teacher_logits)
    _count(teacher_logits, method)
    options = {"fixed_weights": fixed_weights} if "fixed_weights" in weighting.options else {}
    return weighting(teacher_logits, labels, **options)


def per_teacher_kl(teacher_logits, student_logits, temperature):
    """T^2 KL(softmax(z_k / T) || softmax(z_S / T)) per teacher: [K, ..., C], [..., C] ->
    [..., K]."""
    return ops.stack(
        [
            losses.distillation_kl(
                ops.softmax(teacher_logits[k] / temperature, axis=-1), student_logits, temperature
            )
            for k in range(teacher_logits.shape[0])
        ],
        axis=-1,
    )


def weighted_distillation(weights, teacher_logits, student_logits, temperature):
    """CA-MKD Eq. 3 per element: sum_k w_k T^2 KL_k. [..., K], [K, ..., C], [..., C] -> [...]."""
    return ops.sum(
        weights * per_teacher_kl(_stack(teacher_logits), student_logits, temperature), axis=-1
    )


def feature_mse(teacher_features, student_features):
    """Mean squared error over every non-batch axis: [B, ...] x2 -> [B]."""
    squared = ops.square(ops.cast(teacher_features, "float32") - student_features)
    return ops.mean(ops.reshape(squared, (ops.shape(squared)[0], -1)), axis=-1)


def pooling_matrix(size_in, size_out):
    """[size_out, size_in] averaging matrix of adaptive average pooling (PyTorch's windows:
    output i averages inputs floor(i * n / m) .. ceil((i + 1) * n / m) - 1)."""
    matrix = np.zeros((size_out, size_in), "float32")
    for i in range(size_out):
        start = (i * size_in) // size_out
        end = -((-(i + 1) * size_in) // size_out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def adaptive_average_pool(features, size):
    """[B, H, W, C] -> [B, h, w, C] with adaptive average pooling to `size` = (h, w)."""
    height, width = features.shape[1], features.shape[2]
    rows = ops.convert_to_tensor(pooling_matrix(height, size[0]))
    columns = ops.convert_to_tensor(pooling_matrix(width, size[1]))
    pooled = ops.einsum("ih,bhwc->biwc", rows, features)
    return ops.einsum("jw,biwc->bijc", columns, pooled)


def resize_features(features, size):
    """The student's feature map [B, H, W, C] resized to a teacher's (h, w), as the authors'
    code does: adaptive average pooling when it is at least as large, bilinear otherwise
    (half-pixel centres, PyTorch's `align_corners=False`)."""
    height, width = features.shape[1], features.shape[2]
    if (height, width) == tuple(size):
        return features
    if height >= size[0] and width >= size[1]:
        return adaptive_average_pool(features, size)
    return ops.image.resize(features, tuple(size), interpolation="bilinear")


def official_factors(weighting, feature_weighting, count):
    """Extra factors the authors' code applies: (on L_KD, on L_inter).

    Their CA-MKD divides both weighted sums by B * K instead of B; their EBKD uses the
    un-normalised weights 1 - H_k / sum_j H_j (which sum to K - 1) and also divides by B * K,
    i.e. (K - 1) / K times the normalised form. AVER and FitNet-MKD take plain means.
    """
    kd = WEIGHTINGS.get(weighting).official_factor(count)
    features = 1.0 / count if feature_weighting in ("ca_mkd", "logits") else 1.0
    return kd, features


def majority_vote(teacher_logits):
    """Majority vote of K teachers' top-1 classes: [K, N, C] -> int [N].

    Ties go to the tied class predicted first in teacher order, as `collections.Counter`'s
    `most_common` does in the authors' code.
    """
    predictions = np.argmax(np.asarray(teacher_logits), axis=-1)  # [K, N]
    count, examples = predictions.shape
    classes = np.asarray(teacher_logits).shape[-1]
    votes = np.zeros((examples, classes), int)
    np.add.at(votes, (np.arange(examples)[None, :].repeat(count, 0), predictions), 1)
    best = votes.max(axis=1)
    # The first teacher whose class has the top vote count.
    is_top = votes[np.arange(examples)[None, :], predictions] == best[None, :]  # [K, N]
    first = np.argmax(is_top, axis=0)
    return predictions[first, np.arange(examples)]
