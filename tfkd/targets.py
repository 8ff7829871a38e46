"""Teacher-target transforms: teacher logits (and labels) -> target distribution [batch, K].

A transform is a callable `transform(teacher_logits, labels) -> probs`, built from keyword
options by a factory registered in `TARGETS`. `needs_teacher = False` lets a distiller skip the
teacher's forward pass (label smoothing, KD-sim, KD-rel).
"""
from keras import ops

from tfkd.registry import Registry
# --- partial distillation (Tang et al. 2020): pure target functions, transforms in tfkd.partial
from tfkd.partial_targets import (kd_pt, kd_pt_sim, kd_rel, kd_sim,  # noqa: F401
                                  kd_topk, label_smoothing)
# --- end partial distillation

TARGETS = Registry("teacher target")


class TemperatureSoftmax:
    """softmax(teacher_logits / T): Hinton et al.'s soft targets."""

    needs_teacher = True

    def __init__(self, temperature=4.0, **unused):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def __call__(self, teacher_logits, labels):
        return ops.softmax(teacher_logits / self.temperature, axis=-1)


TARGETS.register("temperature", TemperatureSoftmax)


def build_target(name, **options):
    """Builds the registered transform `name` with keyword `options` it may ignore."""
    return TARGETS.get(name)(**options)
