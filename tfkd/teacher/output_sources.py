"""The sources of teacher outputs (`tfkd.teacher.batch_format.TeacherOutputSource`): each makes
a run's training and validation batches in the one batch format, and the distiller reads them
without knowing which made them.

  OnlineSource   nothing stored: the distiller runs its teacher(s), as loaded or served fast
                 (`tfkd.teacher.serving`: folded batch norms, bfloat16)
  StoredSource   per-example outputs computed once: fixed teaching's logits, or the memory or
                 disk cache (`tfkd.teacher.cache`), features included where a method reads them
  ReplaySource   the teacher's top-k on stored augmented views (`tfkd.teacher.replay`)

Training batches are resumable: `training_batches(orders, first_epoch, ...)` reads from any
epoch on exactly what an uninterrupted run reads (`tfkd.data.pipeline.epochs_dataset`).
"""

import numpy as np

from tfkd.data import as_dataset, pipeline
from tfkd.teacher import batch_format, replay_batches


def _split(split):
    return (None, None) if split is None else split


class OnlineSource(batch_format.TeacherOutputSource):
    """Batches (inputs, labels): the distiller runs its teacher(s) on every batch.

    Args:
      train: (x, y) of the training split; validation: (x, y) or None.
      augment: pad-and-crop and flip the training images (`epochs_dataset`'s augmentation).
    """

    name = "online"

    def __init__(self, train, validation=None, augment=False):
        self.train, self.validation, self.augment = train, validation, augment

    def training_batches(self, orders, first_epoch, batch_size, seed):
        return pipeline.epochs_dataset(
            *self.train, orders, batch_size, self.augment, seed, first_epoch
        )

    def validation_batches(self, batch_size):
        x, y = _split(self.validation)
        return None if y is None or not len(y) else as_dataset(x, y, batch_size)


class StoredSource(OnlineSource):
    """Batches carrying per-example teacher outputs computed once.

    Args:
      name: "fixed", "memory" or "disk".
      train: (x, y); outputs: the per-example arrays of the training examples,
        {"teacher_logits": [N, ..., C] or a tuple of K, optionally "teacher_features"}
        (`outputs_of`); memory-mapped arrays are read batch by batch.
      validation: (x, y) or None; validation_outputs: the same arrays for it, or None (the
        validation batches then run the teacher).
      augment: as `OnlineSource`'s (the stored outputs stay those of the clean inputs).
    """

    stores_outputs = True

    def __init__(
        self, name, train, outputs, validation=None, validation_outputs=None, augment=False
    ):
        super().__init__(train, validation, augment)
        self.name, self.outputs, self.validation_outputs = name, outputs, validation_outputs

    def training_batches(self, orders, first_epoch, batch_size, seed):
        return pipeline.epochs_dataset(
            *self.train, orders, batch_size, self.augment, seed, first_epoch, self.outputs
        )

    def validation_batches(self, batch_size):
        x, y = _split(self.validation)
        if self.validation_outputs is None or y is None or not len(y):
            return super().validation_batches(batch_size)
        order = np.arange(len(y))[None]
        return pipeline.epochs_dataset(x, y, order, batch_size, extras=self.validation_outputs)[0]


def outputs_of(cached, single=True, in_memory=False):
    """The per-example arrays a `StoredSource` carries from `tfkd.teacher.cache.CachedOutputs`:
    one teacher's arrays themselves when `single`, else tuples of K; `in_memory` copies a disk
    entry's memory-mapped arrays into memory."""
    copy = np.array if in_memory else (lambda array: array)
    logits = [copy(array) for array in cached.logits]
    features = None if cached.features is None else [copy(a) for a in cached.features]
    one = single and len(logits) == 1
    arrays = {batch_format.TEACHER_LOGITS: logits[0] if one else tuple(logits)}
    if features is not None:
        arrays[batch_format.TEACHER_FEATURES] = features[0] if one else tuple(features)
    return arrays


class ReplaySource(OnlineSource):
    """Batches replaying one stored view of each image per epoch, carrying the stored top-k
    target as logits (`tfkd.teacher.replay_batches.replay_epochs_dataset`); validation batches
    run the teacher on the clean images.

    Args:
      storage: the `ReplayStorage` of the training images; train: (x, y) it was built on;
      validation: (x, y) or None; temperature: the distiller's temperature (None: the
      storage's).
    """

    name = "replay"
    stores_outputs = True

    def __init__(self, storage, train, validation=None, temperature=None):
        super().__init__(train, validation)
        self.storage, self.temperature = storage, temperature

    def training_batches(self, orders, first_epoch, batch_size, seed):
        return replay_batches.replay_epochs_dataset(
            self.storage, *self.train, orders, batch_size, seed, first_epoch, self.temperature
        )
