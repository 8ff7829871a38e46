"""Decoupled KD and DIST against NumPy references written from the papers' equations, the
official code's formulas re-written in NumPy, properties, and 2 replicas against 1."""

import numpy as np
import pytest
import tensorflow as tf

from tfkd import losses
from tfkd.global_batch import gather_global_batch


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _kl(p, q):
    return np.sum(np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - np.log(q)), 0.0), -1)


def _reference_dkd(labels, student_logits, teacher_logits, temperature, alpha, beta):
    """Zhao et al. 2022, Eq. (1)-(4), in float64: the binary split b = (p_t, 1 - p_t) and the
    distribution over the non-target classes p_hat_i = p_i / (1 - p_t), taken literally."""
    rows = np.arange(len(labels))
    p_s, p_t = _softmax(student_logits / temperature), _softmax(teacher_logits / temperature)
    b_s = np.stack([p_s[rows, labels], 1.0 - p_s[rows, labels]], -1)
    b_t = np.stack([p_t[rows, labels], 1.0 - p_t[rows, labels]], -1)
    others = np.ones_like(p_s, bool)
    others[rows, labels] = False
    q_s = p_s[others].reshape(len(labels), -1) / b_s[:, 1:]
    q_t = p_t[others].reshape(len(labels), -1) / b_t[:, 1:]
    return temperature**2 * (alpha * _kl(b_t, b_s) + beta * _kl(q_t, q_s))


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _mdistiller_dkd(labels, logits_student, logits_teacher, alpha, beta, temperature):
    """mdistiller/distillers/DKD.py `dkd_loss` in NumPy: softmax, cat_mask, torch.log, the
    `- 1000.0 * gt_mask` trick, F.kl_div(size_average=False) (a sum over batch and classes)
    divided by the batch size. A scalar."""
    gt_mask = np.zeros_like(logits_student)
    gt_mask[np.arange(len(labels)), labels] = 1.0
    other_mask = 1.0 - gt_mask

    def cat_mask(t):
        return np.concatenate(
            [(t * gt_mask).sum(1, keepdims=True), (t * other_mask).sum(1, keepdims=True)], 1
        )

    pred_student = cat_mask(_softmax(logits_student / temperature))
    pred_teacher = cat_mask(_softmax(logits_teacher / temperature))

    def kl_div_sum(log_input, target):  # F.kl_div: sum of target * (log target - input)
        return np.sum(
            np.where(
                target > 0, target * (np.log(np.where(target > 0, target, 1.0)) - log_input), 0.0
            )
        )

    tckd = kl_div_sum(np.log(pred_student), pred_teacher) * temperature**2 / len(labels)
    pred_teacher_part2 = _softmax(logits_teacher / temperature - 1000.0 * gt_mask)
    log_pred_student_part2 = _log_softmax(logits_student / temperature - 1000.0 * gt_mask)
    nckd = kl_div_sum(log_pred_student_part2, pred_teacher_part2) * temperature**2 / len(labels)
    return alpha * tckd + beta * nckd


def _logits(seed, batch=6, classes=7, scale=3.0):
    rng = np.random.default_rng(seed)
    student, teacher = rng.normal(size=(2, batch, classes)) * scale
    return rng.integers(0, classes, batch), student, teacher


@pytest.mark.parametrize(
    "temperature,alpha,beta", [(4.0, 1.0, 8.0), (1.0, 1.0, 1.0), (2.0, 0.5, 2.0), (8.0, 0.0, 3.0)]
)
def test_decoupled_kd_matches_the_paper_and_mdistiller(temperature, alpha, beta):
    labels, student, teacher = _logits(int(temperature + 10 * beta))
    got = np.asarray(
        losses.decoupled_kd(
            labels, student.astype("float32"), teacher.astype("float32"), temperature, alpha, beta
        )
    )
    assert got.shape == (6,)
    np.testing.assert_allclose(
        got,
        _reference_dkd(labels, student, teacher, temperature, alpha, beta),
        rtol=1e-4,
        atol=1e-5,
    )
    # mdistiller's scalar is the batch mean of our per-example values.
    assert got.mean() == pytest.approx(
        _mdistiller_dkd(labels, student, teacher, alpha, beta, temperature), rel=1e-4
    )


def test_decoupled_kd_properties():
    labels, student, teacher = _logits(3, batch=16, classes=5)
    student, teacher = student.astype("float32"), teacher.astype("float32")
    same = np.asarray(losses.decoupled_kd(labels, student, student))
    np.testing.assert_allclose(same, 0.0, atol=1e-5)
    assert np.all(np.asarray(losses.decoupled_kd(labels, student, teacher)) >= 0)
    # The TCKD term alone is T^2 KL on the binary target / non-target split.
    tckd = np.asarray(losses.decoupled_kd(labels, student, teacher, 2.0, 1.0, 0.0))
    rows = np.arange(16)
    p_s, p_t = _softmax(student / 2.0), _softmax(teacher / 2.0)
    binary = lambda p: np.stack([p[rows, labels], 1.0 - p[rows, labels]], -1)  # noqa: E731
    np.testing.assert_allclose(tckd, 4.0 * _kl(binary(p_t), binary(p_s)), rtol=1e-4, atol=1e-6)
    # With K = 2 there is a single non-target class: NCKD is 0 and DKD is Hinton's KD.
    two_s, two_t = student[:, :2], teacher[:, :2]
    two_labels = labels % 2
    hinton = losses.distillation_kl(_softmax(two_t / 3.0), two_s, 3.0)
    np.testing.assert_allclose(
        losses.decoupled_kd(two_labels, two_s, two_t, 3.0, 1.0, 8.0), hinton, rtol=1e-4, atol=1e-6
    )


def test_decoupled_kd_gradients_are_finite_for_confident_logits():
    labels, student, teacher = _logits(5, batch=8, classes=10, scale=1.0)
    student = tf.constant(np.sign(student) * 100.0, tf.float32)
    teacher = tf.constant(np.sign(teacher) * 100.0, tf.float32)
    for temperature in (1.0, 4.0):
        with tf.GradientTape() as tape:
            tape.watch(student)
            loss = losses.decoupled_kd(labels, student, teacher, temperature)
        gradient = tape.gradient(loss, student).numpy()
        assert np.all(np.isfinite(loss.numpy())) and np.all(np.isfinite(gradient))
        assert np.abs(gradient).max() > 0
    # A teacher whose target probability rounds to 1 in float32 still gives a finite loss.
    sharp = np.zeros((1, 4), "float32")
    sharp[0, 0] = 100.0
    assert np.isfinite(np.asarray(losses.decoupled_kd([0], sharp * 0.5, sharp, 1.0))).all()


def test_decoupled_kd_bad_input():
    labels, student, teacher = _logits(0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        losses.decoupled_kd(labels, student, teacher, temperature=0.0)
    with pytest.raises(ValueError, match="tckd_weight and nckd_weight must be >= 0"):
        losses.decoupled_kd(labels, student, teacher, nckd_weight=-1.0)


def _pearson(a, b):
    a, b = a - a.mean(), b - b.mean()
    return np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b))


def _reference_dist(student_logits, teacher_logits, temperature, beta, gamma):
    """Huang et al. 2022, Eq. (6)-(9), float64: 1 - Pearson of each example's probabilities and
    of each class's probabilities over the batch, each averaged, times T^2."""
    y_s, y_t = _softmax(student_logits / temperature), _softmax(teacher_logits / temperature)
    inter = 1.0 - np.mean([_pearson(y_s[i], y_t[i]) for i in range(len(y_s))])
    intra = 1.0 - np.mean([_pearson(y_s[:, k], y_t[:, k]) for k in range(y_s.shape[1])])
    return temperature**2 * (beta * inter + gamma * intra)


def _official_dist(z_s, z_t, tau, beta, gamma, eps=1e-8):
    """hunto/image_classification_sota lib/models/losses/dist_kd.py `DIST.forward` in NumPy."""

    def cosine_similarity(a, b):
        return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + eps)

    def pearson_correlation(a, b):
        return cosine_similarity(a - a.mean(1)[:, None], b - b.mean(1)[:, None])

    def inter_class_relation(y_s, y_t):
        return 1 - pearson_correlation(y_s, y_t).mean()

    def intra_class_relation(y_s, y_t):
        return inter_class_relation(y_s.T, y_t.T)

    y_s, y_t = _softmax(z_s / tau), _softmax(z_t / tau)
    return beta * tau**2 * inter_class_relation(y_s, y_t) + gamma * tau**2 * intra_class_relation(
        y_s, y_t
    )


@pytest.mark.parametrize(
    "temperature,beta,gamma", [(1.0, 1.0, 1.0), (4.0, 2.0, 2.0), (2.0, 1.0, 0.0), (1.0, 0.0, 1.0)]
)
def test_dist_loss_matches_the_paper_and_the_official_code(temperature, beta, gamma):
    _, student, teacher = _logits(int(temperature * 7 + beta), batch=9, classes=6)
    got = float(
        losses.dist_loss(
            student.astype("float32"), teacher.astype("float32"), temperature, beta, gamma
        )
    )
    assert got == pytest.approx(
        _reference_dist(student, teacher, temperature, beta, gamma), rel=1e-4, abs=1e-5
    )
    assert got == pytest.approx(
        _official_dist(student, teacher, temperature, beta, gamma), rel=1e-4, abs=1e-5
    )


def test_dist_loss_properties():
    _, student, teacher = _logits(8, batch=12, classes=5)
    student, teacher = student.astype("float32"), teacher.astype("float32")
    assert float(losses.dist_loss(student, student)) == pytest.approx(0.0, abs=1e-5)
    # 1 - Pearson lies in [0, 2], so each term lies in [0, 2 T^2] times its weight.
    value = float(losses.dist_loss(student, teacher, 2.0))
    assert 0.0 < value <= 2.0 * (1.0 + 1.0) * 2.0**2
    # The intra-class term is a batch statistic: dropping examples changes the loss of the rest.
    half = float(losses.dist_loss(student[:6], teacher[:6], 1.0, 0.0, 1.0))
    assert half != pytest.approx(float(losses.dist_loss(student, teacher, 1.0, 0.0, 1.0)), rel=1e-3)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        losses.dist_loss(student, teacher, temperature=-1.0)
    with pytest.raises(ValueError, match="inter_weight and intra_weight must be >= 0"):
        losses.dist_loss(student, teacher, intra_weight=-0.5)


def _dist_and_gradient(student, teacher):
    # The pure loss reads the batch it is given; the caller gathers the global batch, as
    # DISTDistiller does.
    with tf.GradientTape() as tape:
        tape.watch(student)
        value = losses.dist_loss(gather_global_batch(student), gather_global_batch(teacher), 2.0)
        scaled = losses.replica_scaled(value)
    return value, tape.gradient(scaled, student)


def test_dist_loss_on_two_replicas_equals_one_replica(mirrored):
    _, student, teacher = _logits(11, batch=8, classes=5)
    student, teacher = tf.constant(student, tf.float32), tf.constant(teacher, tf.float32)
    one_value, one_gradient = _dist_and_gradient(student, teacher)

    def replica_fn(student_part, teacher_part):
        return _dist_and_gradient(student_part, teacher_part)

    def split(value):
        return mirrored.experimental_distribute_values_from_function(
            lambda context: value[
                4 * context.replica_id_in_sync_group : 4 * (context.replica_id_in_sync_group + 1)
            ]
        )

    values, gradients = tf.function(
        lambda: mirrored.run(replica_fn, args=(split(student), split(teacher)))
    )()
    values = mirrored.experimental_local_results(values)
    gradients = mirrored.experimental_local_results(gradients)
    assert len(values) == 2
    for value in values:
        assert float(value) == pytest.approx(float(one_value), rel=1e-6)
    np.testing.assert_allclose(
        np.concatenate([g.numpy() for g in gradients]), one_gradient.numpy(), rtol=1e-5, atol=1e-7
    )
    # Without the gather each replica would see only its own half of the batch.
    local = float(losses.dist_loss(student[:4], teacher[:4], 2.0))
    assert local != pytest.approx(float(one_value), rel=1e-3)
