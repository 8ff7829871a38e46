"""Training state on disk, written atomically, so that a killed or preempted run resumes exactly.

`EpochCheckpoint(folder)` is a Keras callback: at the end of every epoch it writes the model's
weights (optimizer state included: Keras 3's `save_weights` stores the optimizer's variables
too, so the step count and the learning-rate schedule position come back), then `state.json`
naming them with the number of completed epochs and every epoch's logs. `state.json` is
replaced in one rename and names a weights file that is already complete, so a process killed
at any instant leaves the previous state intact. `resume(model, folder)` loads it.

Preemption: while `graceful_stop()` is active, SIGTERM and SIGINT only raise a flag. The
callback sees it after the step in progress, writes that step's state (weights, optimizer,
epoch, step within the epoch and the epoch's metric sums so far), prints one line saying how
to resume and exits with status `PREEMPTED` (75, EX_TEMPFAIL: try again). Under
MultiWorkerMirroredStrategy the workers agree on the step with one all-reduce of their flags
per step, so every worker stops after the same step; the chief writes.

`fault_point(...)` is the test-only fault-injection hook: the TFKD_FAULT environment variable
(read there and nowhere else) names a point at which the process signals itself.
"""

import contextlib
import dataclasses
import glob
import json
import math
import os
import shlex
import signal
import sys
import threading

import keras
import numpy as np
import tensorflow as tf

from tfkd.atomic import atomic_path, write_text

STATE = "state.json"
PREEMPTED = 75
FAULT = "TFKD_FAULT"
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(SystemExit):
    """The run stopped on SIGTERM or SIGINT after checkpointing its last step."""

    def __init__(self):
        super().__init__(PREEMPTED)


def fault_point(phase, epoch=0, step=0):
    """Test-only: signals this process when TFKD_FAULT names this point.

    TFKD_FAULT is `phase[:epoch[:step]][:SIGNAL]` (epoch and step counted from 1, SIGNAL one of
    KILL (default), TERM, INT); a training phase calls this after every step, the other phases
    once, at their point of no return (before their result is recorded).
    """
    spec = os.environ.get(FAULT)
    if not spec:
        return
    parts = spec.split(":")
    name = "KILL"
    if parts[-1].isalpha() and len(parts) > 1:
        name = parts.pop()
    if parts[0] != phase or [int(p) for p in parts[1:]] != [epoch, step][: len(parts) - 1]:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), getattr(signal, f"SIG{name}"))


_stop = {"signal": None}


@contextlib.contextmanager
def graceful_stop():
    """Within, SIGTERM and SIGINT set a flag that `EpochCheckpoint` acts on after the step in
    progress; the previous handlers come back on exit. A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def flag(number, frame):
        _stop["signal"] = signal.Signals(number).name

    _stop["signal"] = None
    previous = {number: signal.signal(number, flag) for number in SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@dataclasses.dataclass
class Resumed:
    epoch: int = 0  # completed epochs
    step: int = 0  # completed steps of the next epoch
    history: list = dataclasses.field(default_factory=list)
    metrics: list = None  # the next epoch's metric variables after `step` steps


def read_state(folder):
    """The saved state ({"epoch", "step", "weights", "history", ...}), or None."""
    path = os.path.join(folder, STATE)
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def completed_epochs(folder):
    state = read_state(folder)
    return 0 if state is None else int(state["epoch"])


def resume(model, folder):
    """Loads the last saved weights into `model` (compiled, built); returns a `Resumed`."""
    state = read_state(folder)
    if state is None:
        return Resumed()
    with model.distribute_strategy.scope():
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(os.path.join(folder, state["weights"]))
    return Resumed(
        int(state["epoch"]), int(state.get("step", 0)), state["history"], state.get("metrics")
    )


def _number(value):
    value = float(value)
    return value if math.isfinite(value) else str(value)


def _multi_worker(model):
    return model.distribute_strategy.extended._in_multi_worker_mode()


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves weights, optimizer state, the epoch count and the epoch logs after every epoch,
    and the state of the step in progress on SIGTERM or SIGINT (within `graceful_stop`).

    Args:
      folder: where the state lives (created on the first save).
      history: the logs of the epochs completed before this `fit` (from `resume`).
      save: False on workers that must not write (multi-worker non-chief); they keep the
        history only.
      phase: names the phase in the preemption message.
      offset: steps of the first epoch done before this `fit` (a resumed step).
      metrics: {path: value} of the metric variables after those steps (sums: totals and
        counts), added back after the first step of this `fit`.
    """

    def __init__(self, folder, history=(), save=True, phase="distill", offset=0, metrics=None):
        super().__init__()
        self.folder, self.save, self.phase = folder, save, phase
        self.history = list(history)
        self.offset, self.metrics = offset, metrics
        self.epoch = 0
        self._agree = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def _restore_metrics(self):
        """Adds the resumed epoch's metric sums (totals and counts) to those of its first
        step here, so its logs are those of the whole epoch (the variables exist from then)."""
        saved, self.metrics = self.metrics, None
        for variable in self.model.metrics_variables:
            if variable.path in saved:
                variable.assign(variable + np.asarray(saved[variable.path], variable.dtype))

    def on_epoch_end(self, epoch, logs=None):
        self.offset, self.metrics = 0, None
        self.history.append(
            {"epoch": epoch, **{name: _number(value) for name, value in (logs or {}).items()}}
        )
        if self.save:
            self._write(f"epoch-{epoch + 1}.weights.h5", {"epoch": epoch + 1})
        fault_point(self.phase, epoch + 1, 0)
        if self._stop_requested():
            self._leave(f"after epoch {epoch + 1}")

    def on_train_batch_end(self, batch, logs=None):
        step = self.offset + batch + 1
        if self.metrics is not None:
            self._restore_metrics()
        fault_point(self.phase, self.epoch + 1, step)
        # After an epoch's last step, its validation and epoch checkpoint come first.
        if batch + 1 == self.params.get("steps") or not self._stop_requested():
            return
        metrics = {
            v.path: np.asarray(keras.ops.convert_to_numpy(v)).tolist()
            for v in self.model.metrics_variables
        }
        if self.save:
            self._write(
                f"epoch-{self.epoch}-step-{step}.weights.h5",
                {"epoch": self.epoch, "step": step, "metrics": metrics},
            )
        self._leave(f"after step {step} of epoch {self.epoch + 1}")

    def _leave(self, where):
        if self._agree is not None:
            self._agree(True)  # every worker leaves after the chief has written
        print(
            f"{self.phase}: stopped by {_stop['signal'] or 'a preemption'} {where}; the "
            f"state is saved in {self.folder}; exit status {PREEMPTED}; to resume, run the "
            f"same command again: {shlex.join(sys.argv)}",
            file=sys.stderr,
            flush=True,
        )
        raise Preempted()

    def _stop_requested(self):
        requested = _stop["signal"] is not None
        if not _multi_worker(self.model):
            return requested
        if self._agree is None:
            strategy = self.model.distribute_strategy

            def agree(flag):
                value = strategy.run(lambda: tf.constant(1.0 if flag else 0.0))
                return float(strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)) > 0

            self._agree = agree
        return self._agree(requested)

    def _write(self, name, fields):
        os.makedirs(self.folder, exist_ok=True)
        with atomic_path(os.path.join(self.folder, name)) as temporary:
            self.model.save_weights(temporary, overwrite=True)
        write_text(
            os.path.join(self.folder, STATE),
            json.dumps({**fields, "weights": name, "history": self.history}),
        )
        for old in glob.glob(os.path.join(self.folder, "*.weights.h5")):
            if os.path.basename(old) != name:
                os.remove(old)


def history_csv(history):
    """CSV text of epoch logs, as `keras.callbacks.CSVLogger` writes it (epoch, sorted keys)."""
    keys = sorted({key for row in history for key in row if key != "epoch"})
    lines = [",".join(["epoch", *keys])]
    for row in history:
        lines.append(",".join([str(row["epoch"])] + [str(row.get(key, "")) for key in keys]))
    return "\n".join(lines) + "\n"
