"""Per-epoch training state on disk, written atomically, so that a killed run resumes exactly.

`EpochCheckpoint(folder)` is a Keras callback: at the end of every epoch it writes the model's
weights (optimizer state included: Keras 3's `save_weights` stores the optimizer's variables
too, so the step count and the learning-rate schedule position come back), then `state.json`
naming them with the number of completed epochs and every epoch's logs. `state.json` is
replaced in one rename and names a weights file that is already complete, so a process killed
at any instant leaves the previous epoch's state intact. `resume(model, folder)` loads it.
"""
import glob
import json
import math
import os

import keras

from tfkd.io import write_text

STATE = "state.json"


def read_state(folder):
    """The saved state ({"epoch", "weights", "history"}), or None when nothing was saved."""
    path = os.path.join(folder, STATE)
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def completed_epochs(folder):
    state = read_state(folder)
    return 0 if state is None else int(state["epoch"])


def resume(model, folder):
    """Loads the last saved weights into `model` (compiled, built); returns (epoch, history)."""
    state = read_state(folder)
    if state is None:
        return 0, []
    with model.distribute_strategy.scope():
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(os.path.join(folder, state["weights"]))
    return int(state["epoch"]), state["history"]


def _number(value):
    value = float(value)
    return value if math.isfinite(value) else str(value)


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves weights, optimizer state, the epoch count and the epoch logs after every epoch.

    Args:
      folder: where the state lives (created on the first save).
      history: the logs of the epochs completed before this `fit` (from `resume`).
      save: False on workers that must not write (multi-worker non-chief); they keep the
        history only.
    """

    def __init__(self, folder, history=(), save=True):
        super().__init__()
        self.folder, self.save = folder, save
        self.history = list(history)

    def on_epoch_end(self, epoch, logs=None):
        self.history.append({"epoch": epoch, **{name: _number(value)
                                                for name, value in (logs or {}).items()}})
        if not self.save:
            return
        os.makedirs(self.folder, exist_ok=True)
        name = f"epoch-{epoch + 1}.weights.h5"
        temporary = os.path.join(self.folder, f".partial-{name}")
        self.model.save_weights(temporary, overwrite=True)
        os.replace(temporary, os.path.join(self.folder, name))
        write_text(os.path.join(self.folder, STATE), json.dumps(
            {"epoch": epoch + 1, "weights": name, "history": self.history}))
        for old in glob.glob(os.path.join(self.folder, "epoch-*.weights.h5")):
            if os.path.basename(old) != name:
                os.remove(old)


def history_csv(history):
    """CSV text of epoch logs, as `keras.callbacks.CSVLogger` writes it (epoch, sorted keys)."""
    keys = sorted({key for row in history for key in row if key != "epoch"})
    lines = [",".join(["epoch", *keys])]
    for row in history:
        lines.append(",".join([str(row["epoch"])] + [str(row.get(key, "")) for key in keys]))
    return "\n".join(lines) + "\n"
