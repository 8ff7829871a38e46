"""Hinton et al. (2015)'s soft targets: cross-entropy, KL and the KD loss on `[..., K]` logits,
the registered distillation distances (`DISTANCES`) and the thin Keras `DistillationLoss`."""

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
