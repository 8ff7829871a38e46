"""Hand-crafted teacher distributions of Tang et al., "Understanding and Improving Knowledge
Distillation" (arXiv:2002.03532), sections 4, 5.3 and appendix 8.

Each keeps part of what a real teacher's distribution p carries, so that the effects of
distillation can be told apart:

- `label_smoothing`: neither class relationships nor per-example confidence (the "universe").
- `kd_pt`: only the teacher's confidence p_t on the true class (gradient rescaling).
- `kd_sim`: only class relationships, from the teacher's classifier weights (one row per class).
- `kd_pt_sim`: a mixture of the two.
- `kd_topk`: the k largest teacher probabilities, the rest spread uniformly (less noise).
- `kd_rel`: class relationships from a given super-class hierarchy instead of the teacher.

Every function returns probability vectors [..., K] (non-negative, summing to 1 over the last
axis) for labels [...] and teacher probabilities [..., K] of any leading shape (classifiers
[batch], sequences [batch, time]), and works on NumPy arrays and on tensors inside a
`tf.function`. Shapes are checked where they are static. Labels given alone (`label_smoothing`,
`kd_sim`, `kd_rel`) of shape [batch, 1] are read as Keras's classifier labels [batch]; pass a
length-1 sequence's labels with the teacher probabilities or as [batch].
"""

import numbers

import numpy as np
from keras import ops


def _static_shape(tensor):
    """The shape known before running (None for dimensions only known at run time)."""
    shape = getattr(tensor, "shape", None)
    if shape is None:
        shape = np.shape(tensor)
    return tuple(None if d is None else int(d) for d in shape)


def _is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_rank(name, tensor, rank, expected):
    shape = _static_shape(tensor)
    if len(shape) != rank:
        raise ValueError(f"{name} must have shape {expected}, got shape {shape}")
    return shape


def _check_batch(name_a, shape_a, name_b, shape_b):
    """Leading shapes `shape_a` and `shape_b` agree where both are static."""
    if len(shape_a) != len(shape_b):
        raise ValueError(
            f"{name_a} and {name_b} disagree on the leading shape: shapes {shape_a} and {shape_b}"
        )
    for axis, (a, b) in enumerate(zip(shape_a, shape_b)):
        if a is not None and b is not None and a != b:
            what = "the batch size" if axis == 0 else "the leading shape"
            raise ValueError(
                f"{name_a} and {name_b} disagree on {what}: shapes {shape_a} and {shape_b}"
            )


def _check_classes(name_a, classes_a, name_b, classes_b):
    if classes_a is not None and classes_b is not None and classes_a != classes_b:
        raise ValueError(f"{name_a} has {classes_a} classes but {name_b} has {classes_b}")


def _labels(labels, leading_rank=None):
    """Integer labels as an int32 tensor [...].

    With `leading_rank` (that of the probabilities they go with) the labels must have that many
    axes, a trailing axis of 1 (Keras's [batch, 1]) dropped; without it, any labels of at least
    one axis, [batch, 1] read as [batch].
    """
    labels = ops.convert_to_tensor(labels)
    shape = _static_shape(labels)
    if leading_rank is None:
        if len(shape) == 2 and shape[1] == 1:
            labels = ops.reshape(labels, (-1,))
        elif not shape:
            raise ValueError(
                f"labels must have shape [batch, ...] of class indices, got shape {shape}"
            )
        return ops.cast(labels, "int32")
    if len(shape) == leading_rank + 1 and shape[-1] == 1:
        labels = ops.squeeze(labels, axis=-1)
    elif len(shape) != leading_rank:
        raise ValueError(
            f"labels must have shape [batch, ...] of class indices with "
            f"{leading_rank} axes (the probabilities' leading shape), got shape "
            f"{shape}"
        )
    return ops.cast(labels, "int32")


def _probs(name, probs):
    probs = ops.cast(ops.convert_to_tensor(probs), "float32")
    shape = _static_shape(probs)
    if len(shape) < 2:
        raise ValueError(f"{name} must have shape [batch, ..., num_classes], got shape {shape}")
    if shape[-1] is None or shape[-1] < 2:
        raise ValueError(f"{name} must have a known number of classes >= 2, got shape {shape}")
    return probs


def label_smoothing(labels, num_classes, epsilon):
    """(1 - epsilon) * onehot(labels) + epsilon / K (Szegedy et al., 2016).

    Args:
      labels: int [...]; num_classes: K >= 2; epsilon: in [0, 1].
    Returns:
      float32 [..., K].
    """
    if not _is_integer(num_classes) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon (label smoothing) must be in [0, 1], got {epsilon}")
    one_hot = ops.one_hot(_labels(labels), int(num_classes), dtype="float32")
    return (1.0 - epsilon) * one_hot + epsilon / num_classes


def kd_pt(teacher_probs, labels):
    """The teacher's probability p_t on the true class t, the rest (1 - p_t) spread uniformly.

    Keeps the per-example confidence (what rescales gradients) and drops class relationships.

    Args:
      teacher_probs: float [..., K], summing to 1 over the last axis; labels: int [...].
    Returns:
      float32 [..., K] with rho_t = p_t and rho_j = (1 - p_t) / (K - 1) for j != t.
    """
    teacher_probs = _probs("teacher_probs", teacher_probs)
    probs_shape = _static_shape(teacher_probs)
    labels = _labels(labels, len(probs_shape) - 1)
    _check_batch("teacher_probs", probs_shape[:-1], "labels", _static_shape(labels))
    num_classes = probs_shape[-1]
    one_hot = ops.one_hot(labels, num_classes, dtype="float32")
    p_true = ops.sum(teacher_probs * one_hot, axis=-1, keepdims=True)
    rest = (1.0 - p_true) / (num_classes - 1)
    return one_hot * p_true + (1.0 - one_hot) * rest


def normalized_rows(weights):
    """Each row divided by its l2 norm (rows of zeros stay zero)."""
    weights = ops.cast(ops.convert_to_tensor(weights), "float32")
    norms = ops.sqrt(ops.sum(ops.square(weights), axis=-1, keepdims=True))
    return weights / ops.maximum(norms, 1e-12)


def similarity_targets(classifier_weights, beta, temperature):
    """One KD-sim target per class: [K, K], row t = softmax(((1 + s_t) / 2)^beta / temperature)
    with s_tj the cosine similarity of the classifier rows of classes t and j.

    Args:
      classifier_weights: float [K, F], one row per class (a Dense kernel transposed).
      beta: > 0, raises the similarities (in [0, 1]) to a power to spread them apart.
      temperature: > 0, the softmax temperature of the similarities.
    """
    if beta <= 0:
        raise ValueError(f"beta (KD-sim similarity power) must be > 0, got {beta}")
    if temperature <= 0:
        raise ValueError(f"temperature (KD-sim) must be > 0, got {temperature}")
    _check_rank("classifier_weights", classifier_weights, 2, "[num_classes, features]")
    unit = normalized_rows(classifier_weights)
    cosine = ops.clip(ops.matmul(unit, ops.transpose(unit)), -1.0, 1.0)
    return ops.softmax(((1.0 + cosine) / 2.0) ** beta / temperature, axis=-1)


def kd_sim(classifier_weights, labels, beta, temperature):
    """Class relationships only: row `similarity_targets(...)[t]` for an example of class t, so
    every example of a class gets the same target.

    Args:
      classifier_weights: float [K, F], one row per class; labels: int [...].
    Returns:
      float32 [..., K].
    """
    table = similarity_targets(classifier_weights, beta, temperature)
    return ops.take(table, _labels(labels), axis=0)


def kd_pt_sim(teacher_probs, classifier_weights, labels, gamma, beta, temperature):
    """gamma * kd_pt(teacher_probs, labels) + (1 - gamma) * kd_sim(classifier_weights, ...).

    Args:
      teacher_probs: float [..., K]; classifier_weights: float [K, F]; labels: int [...].
    Returns:
      float32 [..., K].
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma (KD-pt+sim mixing weight) must be in [0, 1], got {gamma}")
    weights_shape = _check_rank(
        "classifier_weights", classifier_weights, 2, "[num_classes, features]"
    )
    _check_classes(
        "teacher_probs",
        _static_shape(_probs("teacher_probs", teacher_probs))[-1],
        "classifier_weights",
        weights_shape[0],
    )
    labels = _labels(labels, len(_static_shape(teacher_probs)) - 1)
    return gamma * kd_pt(teacher_probs, labels) + (1.0 - gamma) * kd_sim(
        classifier_weights, labels, beta, temperature
    )


def kd_topk(teacher_probs, k):
    """The k largest teacher probabilities kept, the remaining mass spread over the other K - k.

    Args:
      teacher_probs: float [..., K], summing to 1 over the last axis; k: integer in [1, K].
    Returns:
      float32 [..., K]; k = K gives teacher_probs back.
    """
    teacher_probs = _probs("teacher_probs", teacher_probs)
    num_classes = _static_shape(teacher_probs)[-1]
    if not _is_integer(k) or not 1 <= k <= num_classes:
        raise ValueError(
            f"k (top-k) must be an integer in [1, {num_classes}] for "
            f"{num_classes} classes, got {k!r}"
        )
    _, indices = ops.top_k(teacher_probs, int(k))
    # Summing one-hot rows marks exactly k entries, even when probabilities tie.
    kept = ops.sum(ops.one_hot(indices, num_classes, dtype="float32"), axis=-2)
    kept_mass = ops.sum(teacher_probs * kept, axis=-1, keepdims=True)
    rest = ops.maximum(1.0 - kept_mass, 0.0) / max(num_classes - k, 1)
    return kept * teacher_probs + (1.0 - kept) * rest


def kd_rel(labels, superclass_of, p_gt, p_same, p_other):
    """Class relationships from a hierarchy (appendix 8): mass p_gt on the true class t,
    p_same on each other class of t's super-class and p_other on every remaining class,
    then normalised to sum to 1.

    Args:
      labels: int [...]; superclass_of: int [K], the super-class of each class;
      p_gt > 0, p_same >= 0, p_other >= 0.
    Returns:
      float32 [..., K].
    """
    if superclass_of is None:
        raise ValueError(
            "kd_rel needs a super-class map (superclass_of: one super-class per class), got None"
        )
    if p_gt <= 0 or p_same < 0 or p_other < 0:
        raise ValueError(
            f"kd_rel masses must be p_gt > 0, p_same >= 0, p_other >= 0; got "
            f"p_gt={p_gt}, p_same={p_same}, p_other={p_other}"
        )
    _check_rank("superclass_of", superclass_of, 1, "[num_classes]")
    superclass_of = ops.cast(ops.convert_to_tensor(superclass_of), "int32")
    num_classes = _static_shape(superclass_of)[0]
    labels = _labels(labels)
    one_hot = ops.one_hot(labels, num_classes, dtype="float32")
    same = ops.cast(
        ops.equal(
            ops.expand_dims(ops.take(superclass_of, labels), -1), ops.expand_dims(superclass_of, 0)
        ),
        "float32",
    )
    masses = one_hot * p_gt + (same - one_hot) * p_same + (1.0 - same) * p_other
    return masses / ops.sum(masses, axis=-1, keepdims=True)
