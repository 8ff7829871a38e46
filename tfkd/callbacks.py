"""Keras callbacks the run uses; each works in any `fit` of a tfkd distiller."""

import csv
import os

import keras
import numpy as np

from tfkd import curriculum, data, losses


class TestMonitor(keras.callbacks.Callback):
    """Adds to the epoch logs, on the first, every `every`-th and the last epoch (NaN between),
    the student's test accuracy and, given a teacher, how closely the student matches it on
    the test images: top-1 agreement and KL(teacher || student) at T = 1. A CSV logger after
    it records them, giving patience curves from one run."""

    KEYS = ("test_accuracy", "test_agreement", "test_teacher_kl")

    def __init__(self, student, test, every, teacher=None, batch_size=512):
        super().__init__()
        self.student, self.every, self.batch_size = student, every, batch_size
        self.x, self.y = data.to_float(test[0]), np.asarray(test[1])
        self.teacher_probs = None
        if teacher is not None:
            logits = teacher.predict(self.x, batch_size=batch_size, verbose=0)
            self.teacher_probs = keras.ops.convert_to_numpy(keras.ops.softmax(logits))

    def measure(self):
        logits = self.student.predict(self.x, batch_size=self.batch_size, verbose=0)
        values = {"test_accuracy": float(np.mean(np.argmax(logits, -1) == self.y))}
        if self.teacher_probs is not None:
            values["test_agreement"] = float(
                np.mean(np.argmax(logits, -1) == np.argmax(self.teacher_probs, -1))
            )
            kl = losses.kl_divergence(self.teacher_probs, logits)
            values["test_teacher_kl"] = float(np.mean(keras.ops.convert_to_numpy(kl)))
        return values

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        last = epoch + 1 == self.params.get("epochs")
        if epoch == 0 or (epoch + 1) % self.every == 0 or last:
            logs.update(self.measure())
        else:
            keys = self.KEYS if self.teacher_probs is not None else self.KEYS[:1]
            logs.update({key: float("nan") for key in keys})


class BatchValueRecorder(keras.callbacks.Callback):
    """Records the model's `batch_values` variables after every training batch.

    Keras's batch logs hold running epoch means; the variables hold the batch's own value.
    At the end of training writes a CSV (epoch, batch, values...) and one PNG per value.
    """

    def __init__(self, path=None):
        super().__init__()
        self.path = path
        self.rows = []
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        values = [
            float(keras.ops.convert_to_numpy(getattr(self.model, name)))
            for name in self.model.batch_values
        ]
        self.rows.append((self.epoch, batch, *values))

    def values(self, name):
        column = 2 + list(self.model.batch_values).index(name)
        return np.array([row[column] for row in self.rows])

    def on_train_end(self, logs=None):
        if self.path is None or not self.rows:
            return
        names = list(self.model.batch_values)
        with open(self.path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["epoch", "batch", *names])
            writer.writerows(self.rows)
        steps = max(row[1] for row in self.rows) + 1
        for name in names:
            curriculum.plot_batch_values(
                self.values(name),
                os.path.splitext(self.path)[0] + f"_{name}.png",
                steps,
                ylabel=name,
            )


class NonFiniteLossError(ValueError):
    """Training produced a NaN or infinite loss."""


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops `fit` at the first training batch whose loss is NaN or infinite, with one line
    naming the phase, the epoch and the step (both counted from 1).

    Raising ends `fit` before `on_train_end`, so checkpoints written by earlier epochs are left
    as they are and the weights of the diverged step are never saved. The batch logs hold the
    epoch's running mean, which turns non-finite on the first bad batch. With
    `steps_per_execution` > 1 the step named is the last of its group.
    """

    def __init__(self, phase="distill"):
        super().__init__()
        self.phase = phase
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if not logs or "loss" not in logs:
            return
        loss = float(keras.ops.convert_to_numpy(logs["loss"]))
        if not np.isfinite(loss):
            raise NonFiniteLossError(
                f"{self.phase}: the loss became {loss} at epoch {self.epoch + 1}, step "
                f"{batch + 1}; training stopped; the last good checkpoint is kept"
            )
