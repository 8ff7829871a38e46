"""The analyses of Tang et al., "Understanding and Improving Knowledge Distillation"
(arXiv:2002.03532): what a teacher's distribution knows about class relationships (Fig. 1) and
how it rescales the student's per-example gradients (Fig. 2).

Numbers come from pure functions on NumPy arrays; the `plot_*` functions draw them as PNGs.
"""

import numpy as np
import tensorflow as tf

from tfkd import losses
from tfkd.targets import hand_crafted as partial_targets


def softmax(logits, temperature=1.0):
    """softmax(logits / T) in float64: [N, K] -> [N, K]."""
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def class_correlation(probs):
    """Pearson correlation between classes of a teacher's distributions (Fig. 1a/b).

    Entry (i, j) correlates p_i and p_j, the probabilities of classes i and j, over the examples.

    Args:
      probs: [N, K] probability rows.
    Returns:
      float64 [K, K], 1 on the diagonal; a class whose probability never varies correlates 0
      with the others.
    """
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or len(probs) < 2:
        raise ValueError(f"probs must have shape [examples >= 2, classes], got {probs.shape}")
    centred = probs - probs.mean(axis=0)
    norms = np.sqrt((centred**2).sum(axis=0))
    safe = np.where(norms > 0, norms, 1.0)
    correlation = (centred.T @ centred) / np.outer(safe, safe)
    correlation[norms == 0, :] = 0.0
    correlation[:, norms == 0] = 0.0
    np.fill_diagonal(correlation, 1.0)
    return np.clip(correlation, -1.0, 1.0)


def classifier_cosine(weights):
    """Cosine similarity of the classifier's class rows (Fig. 1d): [K, F] -> [K, K]."""
    unit = np.asarray(partial_targets.normalized_rows(weights), np.float64)
    return np.clip(unit @ unit.T, -1.0, 1.0)


def superclass_order(superclass_of):
    """Class indices sorted by super-class (stable), so that a super-class is one block."""
    return np.argsort(np.asarray(superclass_of), kind="stable")


def block_contrast(matrix, superclass_of):
    """Mean off-diagonal entry within super-classes minus the mean across super-classes.

    Positive when the matrix has the block structure of the hierarchy; about 0 when it does not.
    """
    matrix = np.asarray(matrix, np.float64)
    superclass_of = np.asarray(superclass_of)
    same = superclass_of[:, None] == superclass_of[None, :]
    off_diagonal = ~np.eye(len(matrix), dtype=bool)
    within, across = matrix[same & off_diagonal], matrix[~same]
    if within.size == 0 or across.size == 0:
        raise ValueError(
            "block_contrast needs a super-class with two classes and two super-classes"
        )
    return float(within.mean() - across.mean())


def off_diagonal_pearson(a, b):
    """Pearson correlation of the off-diagonal entries of two [K, K] matrices."""
    mask = ~np.eye(len(a), dtype=bool)
    return pearson(np.asarray(a)[mask], np.asarray(b)[mask])


def spearman(a, b):
    """Rank correlation: Pearson of the ranks (ties broken by order), robust to outliers."""
    return pearson(
        np.argsort(np.argsort(a, kind="stable")), np.argsort(np.argsort(b, kind="stable"))
    )


def pearson(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a**2).sum() * (b**2).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def logit_gradients(student_logits, labels, target_probs, temperature, alpha):
    """Per-example gradients w.r.t. the student's logits of cross-entropy and of the KD loss
    (1 - alpha) * CE + alpha * T^2 * KL(target || softmax(z / T)).

    Args:
      student_logits: [N, K]; labels: int [N]; target_probs: [N, K] (e.g. softmax(z_t / T)).
    Returns:
      (ce_gradients, kd_gradients), float64 [N, K] each.
    """
    logits = tf.constant(np.asarray(student_logits, np.float32))
    labels = tf.constant(np.asarray(labels, np.int32))
    targets = tf.constant(np.asarray(target_probs, np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        ce = losses.cross_entropy(labels, logits)
        kd = (1.0 - alpha) * ce + alpha * losses.distillation_kl(targets, logits, temperature)
        # Each example's loss depends on its own logits only, so the gradient of the sum holds
        # every per-example gradient in its own row.
        ce_total, kd_total = tf.reduce_sum(ce), tf.reduce_sum(kd)
    ce_gradients = tape.gradient(ce_total, logits).numpy().astype(np.float64)
    kd_gradients = tape.gradient(kd_total, logits).numpy().astype(np.float64)
    return ce_gradients, kd_gradients


def gradient_rescaling(student_logits, teacher_logits, labels, temperature, alpha):
    """Fig. 2: w_i = ||d L_KD / d z_i|| / ||d CE / d z_i|| against the teacher's p_t.

    Args:
      student_logits, teacher_logits: [N, K]; labels: int [N].
    Returns:
      (w [N], p_t [N]) with p_t = softmax(teacher_logits / T)[i, t_i].
    """
    teacher_probs = softmax(teacher_logits, temperature)
    ce_gradients, kd_gradients = logit_gradients(
        student_logits, labels, teacher_probs, temperature, alpha
    )
    ce_norm = np.linalg.norm(ce_gradients, axis=-1)
    kd_norm = np.linalg.norm(kd_gradients, axis=-1)
    weights = kd_norm / np.maximum(ce_norm, 1e-12)
    p_true = teacher_probs[np.arange(len(labels)), np.asarray(labels)]
    return weights, p_true


# ---- plots ---------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _heatmap(axis, matrix, title, boundaries, low):
    image = axis.imshow(matrix, cmap="viridis", vmin=low, vmax=1.0, interpolation="nearest")
    for edge in boundaries:
        axis.axhline(edge - 0.5, color="white", linewidth=0.6)
        axis.axvline(edge - 0.5, color="white", linewidth=0.6)
    axis.set_title(title, fontsize=9)
    axis.set_xticks([])
    axis.set_yticks([])
    return image


def plot_class_relationships(correlations, cosine, superclass_of, path, title=""):
    """Correlation heatmaps (one per temperature) next to the classifier-weight cosines.

    Args:
      correlations: {temperature: [K, K]}; cosine: [K, K] or None;
      superclass_of: [K] or None (classes then stay in their own order).
    """
    plt = _pyplot()
    order = np.arange(len(next(iter(correlations.values()))))
    boundaries = []
    if superclass_of is not None:
        order = superclass_order(superclass_of)
        sorted_groups = np.asarray(superclass_of)[order]
        boundaries = list(np.flatnonzero(np.diff(sorted_groups)) + 1)
    panels = [(f"teacher correlation, T = {t:g}", m) for t, m in correlations.items()]
    if cosine is not None:
        panels.append(("classifier-weight cosine", cosine))
    figure, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), squeeze=False)
    for axis, (name, matrix) in zip(axes[0], panels):
        matrix = np.asarray(matrix)[np.ix_(order, order)]
        image = _heatmap(axis, matrix, name, boundaries, low=min(-0.2, matrix.min()))
        figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    ordered = "classes ordered by super-class" if superclass_of is not None else "class order"
    figure.suptitle(f"{title} ({ordered})".strip(), fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_gradient_rescaling(weights, p_true, path, title=""):
    """Scatter of w_i against p_t with the Pearson correlation in the title."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.8, 3.8))
    axis.scatter(p_true, weights, s=4, alpha=0.4, linewidths=0)
    axis.set_xlabel("teacher p_t (probability of the true class at T)")
    axis.set_ylabel("w_i = |grad KD| / |grad CE|  (log scale)")
    # w_i spans decades (CE's gradient vanishes on examples the student already fits).
    axis.set_yscale("log")
    axis.set_title(
        f"{title} Pearson r = {pearson(weights, p_true):.3f}, Spearman "
        f"{spearman(weights, p_true):.3f}".strip(),
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
