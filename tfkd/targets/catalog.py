"""The teacher-target registry and Hinton's temperature softmax.

A transform is a callable `transform(teacher_logits [..., K], labels [...]) -> probs [..., K]`
(classifiers [batch, K], sequences [batch, time, K]), built from keyword options by a factory
registered in `TARGETS`. `needs_teacher = False` lets a distiller skip the teacher's forward pass
(label smoothing, KD-sim, KD-rel).
"""

import inspect

from keras import ops

from tfkd.registry import Registry

TARGETS = Registry("teacher target", package="tfkd.targets")


class TemperatureSoftmax:
    """softmax(teacher_logits / T): Hinton et al.'s soft targets."""

    needs_teacher = True

    def __init__(self, temperature=4.0):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def __call__(self, teacher_logits, labels):
        return ops.softmax(teacher_logits / self.temperature, axis=-1)


TARGETS.register("temperature", TemperatureSoftmax)


def build_target(name, temperature=None, **options):
    """Builds the registered transform `name` from keyword `options`.

    `temperature` (the distiller's) is passed only to transforms that take one, so label-only
    targets need not accept it; any other option the transform does not take is refused.

    Raises:
      ValueError naming the unknown target or the options the transform does not take.
    """
    factory = TARGETS.get(name)
    parameters = inspect.signature(factory).parameters
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        raise ValueError(
            f"teacher target {name!r} takes no option {', '.join(unknown)}; its "
            f"options: {', '.join(parameters) or 'none'}"
        )
    if temperature is not None and "temperature" in parameters:
        options["temperature"] = temperature
    return factory(**options)
