"""NumPy references for the partial-distillation targets, one loop per example, straight from
the definitions of Tang et al. (arXiv:2002.03532)."""

import numpy as np


def softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def ref_label_smoothing(labels, classes, epsilon):
    out = np.full((len(labels), classes), epsilon / classes)
    for i, t in enumerate(labels):
        out[i, t] += 1.0 - epsilon
    return out


def ref_kd_pt(probs, labels):
    n, classes = probs.shape
    out = np.empty((n, classes))
    for i, t in enumerate(labels):
        out[i, :] = (1.0 - probs[i, t]) / (classes - 1)
        out[i, t] = probs[i, t]
    return out


def ref_kd_sim(weights, labels, beta, temperature):
    out = []
    for t in labels:
        w_t = weights[t] / np.linalg.norm(weights[t])
        s = np.array([w_t @ (w / np.linalg.norm(w)) for w in weights])
        scores = ((1.0 + s) / 2.0) ** beta / temperature
        out.append(np.exp(scores) / np.exp(scores).sum())
    return np.array(out)


def ref_kd_topk(probs, k):
    out = np.empty_like(probs, dtype=np.float64)
    for i, row in enumerate(probs):
        top = np.argsort(-row, kind="stable")[:k]
        rest = (1.0 - row[top].sum()) / max(len(row) - k, 1)
        out[i] = rest
        out[i, top] = row[top]
    return out


def ref_kd_rel(labels, superclass_of, p_gt, p_same, p_other):
    out = []
    for t in labels:
        row = np.array(
            [
                p_gt if j == t else p_same if superclass_of[j] == superclass_of[t] else p_other
                for j in range(len(superclass_of))
            ]
        )
        out.append(row / row.sum())
    return np.array(out)


def ref_kl_distance(target, student_logits, temperature):
    """T^2 * KL(target || softmax(z / T)), per example."""
    q = softmax(student_logits / temperature)
    safe = np.where(target > 0, target, 1.0)
    return temperature**2 * np.sum(target * (np.log(safe) - np.log(q)), axis=-1)
