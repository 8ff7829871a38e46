"""One resumable training phase of a causal-LM run: per-epoch checkpoints in
`<work>/checkpoints/<phase>/` (`tfkd.checkpoint`), batches that are a function of (seed, epoch),
and a re-run that loads the last checkpoint and goes on from the step after it."""

import dataclasses
from typing import Any, Callable

from tfkd import checkpoint
from tfkd.callbacks import NonFiniteLossGuard


@dataclasses.dataclass(frozen=True)
class Phase:
    """What one phase fits.

    Attributes:
      name: the phase ("teacher", "distill", "baseline"): its checkpoint folder and messages.
      epochs: epochs in all.
      steps: batches per epoch.
      batches: `batches(first_epoch)` -> the training batches of epochs first_epoch, ... in
        order, epoch after epoch.
      validation: the validation batches, or None.
      write: False on processes that must not write (multi-worker non-chief).
      verbose: Keras's `fit` verbosity.
    """

    name: str
    epochs: int
    steps: int
    batches: Callable
    validation: Any = None
    write: bool = True
    verbose: int = 0


def fit_resumable(model, work, phase):
    """Fits `model` (compiled) for `phase.epochs`, from the last checkpoint in `work` (the run's
    WorkDir); returns every epoch's logs (the resumed epochs' included)."""
    folder = work.file("checkpoints", phase.name)
    resumed = checkpoint.resume(model, folder)
    first_epoch, first_step = resumed.epoch, resumed.step
    if first_epoch >= phase.epochs:
        return resumed.history
    if first_epoch or first_step:
        print(
            f"Resuming {phase.name} at epoch {first_epoch + 1} of {phase.epochs}, step "
            f"{first_step + 1}",
            flush=True,
        )
    saver = checkpoint.EpochCheckpoint(
        folder,
        resumed.history,
        save=phase.write,
        phase=phase.name,
        offset=first_step,
        metrics=resumed.metrics,
    )
    callbacks = [NonFiniteLossGuard(phase.name), saver]
    # A run stopped after step k of an epoch reads that epoch's batches from k + 1 on: one fit
    # finishes the epoch, a second one runs the epochs after it.
    train = phase.batches(first_epoch).skip(first_step)
    parts = [(train, phase.epochs, phase.steps, first_epoch)]
    if first_step:
        rest = phase.steps - first_step
        parts = [
            (train.take(rest), first_epoch + 1, rest, first_epoch),
            (train.skip(rest), phase.epochs, phase.steps, first_epoch + 1),
        ]
    with checkpoint.graceful_stop():
        for batches, last_epoch, steps, initial_epoch in parts:
            if last_epoch > initial_epoch:
                model.fit(
                    batches,
                    validation_data=phase.validation,
                    epochs=last_epoch,
                    initial_epoch=initial_epoch,
                    steps_per_epoch=steps,
                    shuffle=False,
                    verbose=phase.verbose,
                    callbacks=callbacks,
                )
    return saver.history
