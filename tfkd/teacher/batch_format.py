"""The one batch format in which teacher outputs reach a distiller, and the interface of the
sources that produce it.

Every source of teacher outputs yields training batches

    (inputs, {"labels": int [B, ...],
              "teacher_logits": float [B, ..., C], or a tuple of K of them (teacher k at k),
              "teacher_features": float [B, *feature_shape] or a tuple of K (optional)})

or, when nothing is stored and the distiller runs its teacher(s) on every batch (the online
source), `(inputs, labels)` or `(inputs, {"labels": ...})`. A distiller reads every batch the
same way (`unpack`), whichever source made it: stored logits stand in for its teachers' forward
pass, features for their feature maps.

The sources (`TeacherOutputSource`): online (the teacher runs, possibly served fast: folded
batch norms, bfloat16), fixed teaching (logits once, on clean inputs), the cache in memory or on
disk (outputs once per data set, validation split included), and replay (the teacher's top-k on
stored augmented views). This module imports no storage code, so a distiller may import it.
"""

import abc
from typing import NamedTuple, Optional

LABELS = "labels"
TEACHER_LOGITS = "teacher_logits"
TEACHER_FEATURES = "teacher_features"


class StoredOutputs(NamedTuple):
    """Teacher input standing for the outputs a batch carries: K logits [B, ..., C] and K
    feature maps (or None), teacher k at position k."""

    logits: tuple
    features: Optional[tuple] = None


def _as_tuple(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def targets(labels, logits, features=None):
    """The label dict of one batch: `logits` one array (one teacher) or a sequence of K, and
    `features` likewise (or None)."""
    result = {LABELS: labels, TEACHER_LOGITS: logits}
    if features is not None:
        result[TEACHER_FEATURES] = features
    return result


def unpack(y):
    """(labels, `StoredOutputs` or None) from a batch's labels or label dict."""
    if not isinstance(y, dict):
        return y, None
    if LABELS not in y:
        raise ValueError(f"label dict needs key {LABELS!r}, got keys {sorted(y)}")
    logits, features = y.get(TEACHER_LOGITS), y.get(TEACHER_FEATURES)
    if logits is None:
        if features is not None:
            raise ValueError(f"the batches carry {TEACHER_FEATURES!r} without {TEACHER_LOGITS!r}")
        return y[LABELS], None
    features = None if features is None else _as_tuple(features)
    return y[LABELS], StoredOutputs(_as_tuple(logits), features)


class TeacherOutputSource(abc.ABC):
    """Where the training (and validation) batches of a run get their teacher outputs.

    Attributes:
      name: "online", "fixed", "memory", "disk" or "replay".
      stores_outputs: False when the distiller runs its teacher(s) on every batch.
    """

    name = "online"
    stores_outputs = False

    @abc.abstractmethod
    def training_batches(self, orders, first_epoch, batch_size, seed):
        """(dataset of batches in the format above, steps per epoch) for the epochs whose
        example orders are the rows of `orders` (int [epochs, N]), resumable at any epoch."""

    @abc.abstractmethod
    def validation_batches(self, batch_size):
        """The validation batches (carrying stored outputs where the source holds them), or
        None without a validation split."""
