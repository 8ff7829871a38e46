"""tfkd's teacher targets inside Keras's own `keras.distillation.Distiller`.

`TargetDistillation` is a `keras.distillation.DistillationLoss` whose value is tfkd's
distillation term: the global-batch mean of `distance(target(z_t, y), z_s, T)`, with any
registered teacher target (`tfkd.targets.TARGETS`) and, by default, Hinton's T^2 * KL.

`keras.distillation.Distiller` calls `compute_loss(teacher_outputs, student_outputs)` and hands a
distillation loss no labels. Targets that read the labels (kd_pt, kd_sim, kd_pt_sim, kd_rel,
label_smoothing) therefore refuse to run there with a clear error; `LabelledDistiller`, a
`keras.distillation.Distiller` that passes each batch's labels on, runs them all.
"""

import threading

import keras
import numpy as np
from keras import ops

from tfkd import losses
from tfkd.distillers import global_mean
from tfkd.targets import TARGETS, CalibratedSoftmax, TemperatureSoftmax, build_target
from tfkd.targets.partial import TopkTarget

# Transforms known to ignore their `labels` argument; any other target must declare
# `needs_labels = False` to run without labels.
LABEL_FREE_TARGETS = (TemperatureSoftmax, CalibratedSoftmax, TopkTarget)


def needs_labels(target):
    """Whether the teacher-target transform `target` reads the true labels."""
    declared = getattr(target, "needs_labels", None)
    if declared is not None:
        return bool(declared)
    return not isinstance(target, LABEL_FREE_TARGETS)


@keras.saving.register_keras_serializable(package="tfkd")
class TargetDistillation(keras.distillation.DistillationLoss):
    """tfkd's distillation term as a `keras.distillation.DistillationLoss`.

    Value: mean over the global batch of `distance(target(teacher_logits, labels),
    student_logits, temperature)`; `target` is a registered name (built with
    `temperature` and `target_options`, exactly as `tfkd.Distiller(target=..., target_options=...)`
    builds it) or a transform; `distance` a name in `tfkd.losses.DISTANCES` (default "kl":
    T^2 * KL, Hinton's number).

    The mean is taken as `tf.nn.compute_average_loss` (and every `keras.losses.Loss` object)
    takes it: per-replica sum / global batch. Keras sums gradients across replicas, so under
    `tf.distribute` this term gives 2 replicas the step of 1 replica. Compile the Distiller with
    a `keras.losses.Loss` object (not a loss name, which resolves to a plain function averaged
    per replica) so that the student term is scaled the same way. Keras's Distiller logs its
    `distillation_loss`, `student_loss` and `total_loss` unscaled, so under N replicas they read
    1/N of the value of such replica-scaled terms; its `loss` metric reads the true value.

    Both models must output logits [batch, K] (one output each).
    """

    def __init__(self, target="temperature", temperature=4.0, distance="kl", **target_options):
        if not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
        if isinstance(target, str):
            self.target_name = target
            self.target = build_target(target, temperature=temperature, **target_options)
        elif callable(target):
            if target_options:
                raise ValueError(
                    "target_options apply to a target given by name; got a built "
                    f"target and options {sorted(target_options)}"
                )
            self.target_name, self.target = None, target
        else:
            raise ValueError(
                f"target must be a registered name ({', '.join(TARGETS.names())}) "
                f"or a transform(teacher_logits, labels), got {target!r}"
            )
        self.distance_name = distance if isinstance(distance, str) else None
        self.distance = losses.DISTANCES.get(distance) if isinstance(distance, str) else distance
        self.temperature = float(temperature)
        self.target_options = dict(target_options)
        self.needs_labels = needs_labels(self.target)
        # Set by LabelledDistiller around each step; one value per thread because
        # MirroredStrategy runs every replica's step in its own thread.
        self._batch = threading.local()

    def validate_outputs(self, teacher_outputs, student_outputs):
        super().validate_outputs(teacher_outputs, student_outputs)
        for name, outputs in (("teacher", teacher_outputs), ("student", student_outputs)):
            if isinstance(outputs, (list, tuple, dict)) or len(outputs.shape) != 2:
                raise ValueError(
                    f"TargetDistillation needs one {name} output of logits "
                    f"[batch, classes], got {outputs!r}"
                )

    def compute_loss(self, teacher_outputs, student_outputs, labels=None, **kwargs):
        """Scalar: the global-batch mean of the per-example distillation term.

        Args:
          teacher_outputs, student_outputs: logits [batch, K].
          labels: int [batch], needed by targets that read them; `LabelledDistiller` supplies
            them during `fit` and `evaluate`.
        """
        if labels is None:
            labels = getattr(self._batch, "labels", None)
        if labels is None and self.needs_labels:
            raise ValueError(
                f"target {self.target_name or type(self.target).__name__!r} needs the true "
                "labels, and keras.distillation.Distiller passes none to a distillation loss; "
                "train with tfkd.interop.LabelledDistiller (same arguments) or tfkd.Distiller"
            )
        teacher_logits = ops.cast(teacher_outputs, "float32")
        student_logits = ops.cast(student_outputs, "float32")
        target = self.target(teacher_logits, labels)
        return global_mean(self.distance(target, student_logits, self.temperature))

    def get_config(self):
        if self.target_name is None or self.distance_name is None:
            raise NotImplementedError(
                "a TargetDistillation built from a transform or a distance "
                "function has no config; build it from names to save it"
            )
        options = {
            name: value.tolist() if isinstance(value, np.ndarray) else value
            for name, value in self.target_options.items()
        }
        return {
            "target": self.target_name,
            "temperature": self.temperature,
            "distance": self.distance_name,
            **options,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfkd")
class LabelledDistiller(keras.distillation.Distiller):
    """`keras.distillation.Distiller` that hands each batch's labels to its
    `TargetDistillation` losses, so that label-reading targets (kd_pt, kd_sim, ...) run in it.
    Everything else is Keras's Distiller unchanged."""

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        own = [loss for loss in self.distillation_losses if isinstance(loss, TargetDistillation)]
        for loss in own:
            loss._batch.labels = y
        try:
            return super().compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
            )
        finally:
            for loss in own:
                loss._batch.labels = None
