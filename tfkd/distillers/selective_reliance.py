"""Selective teacher reliance (`--method=kd_sr`): one KD weight per batch, from its difficulty.

Khan, Nadiminty and Amin: the student should lean on the teacher only where the data are hard.
A batch's difficulty is 1 - its mean teacher confidence, so per batch
    lambda = clip((1 - mean_b C) / max_train C - s, 0, 1),
    loss   = (1 - lambda) CE(y, z_s) + lambda T^2 KL(softmax(z_t / T) || softmax(z_s / T)).
Under a curriculum the batches go from easy to hard, so lambda rises through every epoch.
"""

import keras
import tensorflow as tf
from keras import ops

from tfkd import curriculum, losses
from tfkd.distillers.base import Distiller
from tfkd.methods import METHODS, TEMPERATURE, Method, Option

RELIANCE_SHIFT = Option(
    "reliance_shift", 0.0, "kd_sr: s in lambda = (1 - batch confidence) / max confidence - s."
)


def teacher_confidence(teacher_logits):
    """Top-1 probability of the teacher at temperature 1: [batch, K] -> [batch]."""
    return ops.max(ops.softmax(ops.cast(teacher_logits, "float32"), axis=-1), axis=-1)


def global_batch_mean(values):
    """Mean of a [batch] tensor over the GLOBAL batch: all replicas' examples, not just ours.

    Every replica gets the same value, so a per-batch weight derived from it is the same on
    2 replicas as on 1.
    """
    values = ops.cast(values, "float32")
    local = ops.stack([ops.sum(values), ops.cast(ops.shape(values)[0], "float32")])
    context = tf.distribute.get_replica_context()
    if context is not None:
        local = context.all_reduce(tf.distribute.ReduceOp.SUM, local)
    return local[0] / local[1]


@keras.saving.register_keras_serializable(package="tfkd")
class SelectiveRelianceDistiller(Distiller):
    """KD whose weight lambda is set per batch by `curriculum.selective_reliance_lambda`.

    `reliance` (lambda) is a loss term like the others: fit reports its mean over the epoch;
    `batch_reliance` holds the last training batch's value for per-batch recording
    (`tfkd.callbacks.BatchValueRecorder`).
    """

    loss_terms = ("loss", "student_loss", "distillation_loss", "reliance")
    batch_values = ("batch_reliance",)

    def __init__(
        self, student, teacher, max_confidence, temperature=4.0, reliance_shift=0.0, **kwargs
    ):
        super().__init__(student, teacher, temperature=temperature, alpha=0.0, **kwargs)
        if not 0.0 < max_confidence <= 1.0:
            raise ValueError(f"max_confidence must be in (0, 1], got {max_confidence}")
        self.max_confidence = float(max_confidence)
        self.reliance_shift = float(reliance_shift)
        # On-read: each replica writes its own copy (all equal) with no collective op, which
        # would otherwise interleave with the gradient all-reduce.
        self.batch_reliance = keras.Variable(
            0.0,
            trainable=False,
            name="batch_reliance",
            aggregation="only_first_replica",
            synchronization="on_read",
        )

    def reliance(self, teacher_logits):
        """This batch's lambda, a scalar (the same on every replica)."""
        batch_confidence = global_batch_mean(teacher_confidence(teacher_logits))
        return curriculum.selective_reliance_lambda(
            batch_confidence, self.max_confidence, self.reliance_shift
        )

    def compute_terms(self, x, y, student_logits, teacher_logits, training):
        weight = ops.stop_gradient(self.reliance(teacher_logits))
        if training:
            self.batch_reliance.assign(weight)
        student_loss = losses.cross_entropy(y, student_logits)
        target = self.target(teacher_logits, y)
        distillation_loss = self.distance(target, student_logits, self.temperature)
        loss = (1.0 - weight) * student_loss + weight * distillation_loss
        return {
            "loss": loss,
            "student_loss": student_loss,
            "distillation_loss": distillation_loss,
            "reliance": weight,
        }


def _build(student, teacher, bundle, options):
    _, confidence, _ = curriculum.training_scores(teacher, bundle)
    return SelectiveRelianceDistiller(
        student,
        teacher,
        max_confidence=float(confidence.max()),
        temperature=options["temperature"],
        reliance_shift=options["reliance_shift"],
    )


METHODS.register(
    "kd_sr",
    Method(
        _build,
        (TEMPERATURE, RELIANCE_SHIFT),
        description="Khan et al.: (1-l) CE + l T^2 KL, l = (1 - batch confidence) / max C - s",
    ),
)
