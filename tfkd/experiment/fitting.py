"""Models built and fitted the way every phase of a run does it, resumably.

Every training phase fits through `fit_resumable`: per-epoch checkpoints in
`<work>/checkpoints/<phase>/`, batches that are a function of (seed, epoch), and a re-run that
loads the last checkpoint and continues from the next epoch.
"""

import dataclasses
from typing import Any, Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from tfkd import callbacks as run_callbacks
from tfkd import checkpoint, data, models, training
from tfkd.atomic import write_text
from tfkd.data import pipeline
from tfkd.distillers import Distiller
from tfkd.experiment import workdir
from tfkd.exporting import student as export


def seed_everything(seed):
    """Seeds Python's, NumPy's and TensorFlow's generators (`keras.utils.set_random_seed`)."""
    keras.utils.set_random_seed(seed)


def make_strategy(config):
    """The `tf.distribute` strategy `config.strategy` names (`tfkd.training.make_strategy`)."""
    return training.make_strategy(config.strategy, tpu=config.tpu)


def set_determinism(config):
    """Seeds Python, NumPy and TensorFlow with `config.seed` and, with `config.deterministic`,
    makes TensorFlow's ops deterministic: what a run does before it builds anything."""
    seed_everything(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()


def build_model(arch, bundle, strategy, precision="float32"):
    """The zoo's `arch` for the data set `bundle` (its input shape, classes and, for images or
    vectors, normalization statistics), built in `strategy`'s scope at `precision`."""
    is_text_model = arch in models.TEXT_MODELS
    if is_text_model != bundle.is_text:
        kind = "token ids" if bundle.is_text else "images or vectors"
        known = models.TEXT_MODELS.names() if bundle.is_text else models.names()
        raise ValueError(
            f"model {arch!r} cannot read --dataset={bundle.name}, which holds "
            f"{kind}; models for it: {', '.join(known)}"
        )
    if is_text_model:  # no normalization statistics: the inputs are token ids
        with strategy.scope(), training.precision_policy(precision):
            return models.build(
                arch, bundle.input_shape, bundle.num_classes, vocabulary_size=bundle.vocabulary_size
            )
    mean, variance = bundle.stats()
    with strategy.scope(), training.precision_policy(precision):
        return models.build(
            arch,
            input_shape=bundle.input_shape,
            num_classes=bundle.num_classes,
            mean=mean,
            variance=variance,
        )


def in_float32(model, arch, bundle, strategy):
    """`model` (trained at any precision; its weights are float32) as a float32 model, which is
    what the run evaluates, saves and exports."""
    if model.dtype_policy.name == "float32":
        return model
    plain = build_model(arch, bundle, strategy)
    plain.set_weights(model.get_weights())
    return plain


def sharded(dataset):
    """Under MultiWorkerMirroredStrategy every worker reads its share of each global batch
    (data sharding), so the global batch is --batch_size whatever the number of workers."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def build_locally(model, dataset):
    """Keras's `fit` learns the input shapes by reducing the first distributed batch across
    replicas (`_maybe_symbolic_build`), a collective that fails under
    MultiWorkerMirroredStrategy (TF 2.21, Keras 3.15); build from one local batch instead."""
    if not isinstance(model.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    batch = next(iter(dataset.take(1)))
    with model.distribute_strategy.scope():
        model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = lambda *args, **kwargs: None


def validation_dataset(bundle, batch_size, extras=None):
    """The validation batches; with `extras` (cached teacher outputs) they carry them."""
    x, y = bundle.validation
    if not len(y):
        return None
    if extras is None:
        return sharded(data.as_dataset(x, y, batch_size))
    dataset, _ = pipeline.epochs_dataset(x, y, np.arange(len(y))[None], batch_size, extras=extras)
    return sharded(dataset)


def accuracy(model, split, batch_size=256):
    """The top-1 accuracy of `model` on a (x, y) split, or None for an empty split."""
    x, y = split
    if not len(y):
        return None
    logits = model.predict(data.to_float(x), batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(y)))


@dataclasses.dataclass(frozen=True)
class Fit:
    """What one resumable training phase fits on, and how.

    Attributes:
      phase: names the checkpoint folder and the messages.
      bundle: the DataBundle whose training split is fitted (validation split: validation).
      schedule: the TrainConfig (epochs, batch size, precision, ...).
      seed: the batches are a function of (seed, epoch).
      verbose: Keras's `fit` verbosity.
      orders: int [epochs, N] training order per epoch (default: a seeded shuffle per epoch).
      augment: pad-and-crop and flip the training images.
      extras: per-example arrays the batches carry (`pipeline.epochs_dataset`);
        validation_extras: the same for the validation batches.
      callbacks: Keras callbacks besides the run's own.
      write: False on processes that must not write (multi-worker non-chief).
      stream: optional `make(orders, first_epoch, batch_size, seed) -> (dataset, steps)`
        building the training batches instead of `pipeline.epochs_dataset` (replay).
    """

    phase: str
    bundle: Any
    schedule: Any
    seed: int
    verbose: int = 0
    orders: Any = None
    augment: bool = False
    extras: Optional[dict] = None
    validation_extras: Optional[dict] = None
    callbacks: tuple = ()
    write: bool = True
    stream: Optional[Callable] = None


def fit_resumable(model, work, fit):
    """Fits `model` (compiled) as `fit` says for `fit.schedule.epochs`, resuming from the last
    checkpoint in `work` (the run's WorkDir).

    Returns:
      the list of epoch logs (the earlier, resumed epochs included).
    """
    bundle, schedule, phase = fit.bundle, fit.schedule, fit.phase
    folder = work.file("checkpoints", phase)
    if hasattr(model, "build") and not model.built and not bundle.is_text:
        model.build((None, *bundle.input_shape))
    resumed = checkpoint.resume(model, folder)
    first_epoch, first_step, history = resumed.epoch, resumed.step, resumed.history
    workdir.announce_resume(phase, first_epoch, first_step, schedule.epochs)
    if first_epoch >= schedule.epochs:
        return history
    if fit.orders is None:
        orders = pipeline.shuffled_orders(
            len(bundle.train[1]), schedule.epochs, fit.seed, first_epoch
        )
    else:
        orders = np.asarray(fit.orders)[first_epoch:]
    if fit.stream is not None:
        train, steps = fit.stream(orders, first_epoch, schedule.batch_size, fit.seed)
    else:
        train, steps = pipeline.epochs_dataset(
            *bundle.train,
            orders,
            schedule.batch_size,
            fit.augment,
            fit.seed,
            first_epoch,
            fit.extras,
        )
    saver = checkpoint.EpochCheckpoint(
        folder, history, save=fit.write, phase=phase, offset=first_step, metrics=resumed.metrics
    )
    callbacks = [*fit.callbacks, run_callbacks.NonFiniteLossGuard(phase), saver]
    if fit.write:
        callbacks.append(keras.callbacks.TensorBoard(work.file("logs", phase)))
    build_locally(model, train)
    validation = validation_dataset(bundle, schedule.batch_size, fit.validation_extras)
    # A run stopped after step k of an epoch reads that epoch's batches from k + 1 on: one fit
    # finishes the epoch, a second one runs the epochs after it.
    train = train.skip(first_step)
    parts = (
        [
            (train.take(steps - first_step), first_epoch + 1, steps - first_step),
            (train.skip(steps - first_step), schedule.epochs, steps),
        ]
        if first_step
        else [(train, schedule.epochs, steps)]
    )
    with checkpoint.graceful_stop():
        for part, (batches, last_epoch, part_steps) in enumerate(parts):
            if last_epoch > first_epoch + part:
                model.fit(
                    sharded(batches),
                    validation_data=validation,
                    epochs=last_epoch,
                    initial_epoch=first_epoch + part,
                    steps_per_epoch=part_steps,
                    shuffle=False,
                    verbose=fit.verbose,
                    callbacks=callbacks,
                )
    return saver.history


def train_classifier(arch, fit, strategy, work):
    """Trains `arch` alone with cross-entropy (teachers and baselines) as `fit` says, resuming;
    returns (float32 model, history)."""
    bundle, schedule = fit.bundle, fit.schedule
    print(f"Training {fit.phase} {arch} for {schedule.epochs} epochs", flush=True)
    seed_everything(fit.seed)
    model = build_model(arch, bundle, strategy, schedule.precision)
    steps = -(-len(bundle.train[1]) // schedule.batch_size)
    with strategy.scope():
        if strategy.extended._in_multi_worker_mode():
            # Cross-entropy through a teacher-less Distiller, whose step logs Keras can reduce
            # across workers (see tfkd.distillers.base.per_worker_logs).
            trainer = Distiller(
                model,
                None,
                alpha=0.0,
                target="label_smoothing",
                target_options={"epsilon": 0.0, "num_classes": bundle.num_classes},
            )
            trainer.compile(
                optimizer=training.make_optimizer(schedule, steps), metrics=["accuracy"]
            )
        else:
            trainer = training.compile_classifier(model, schedule, steps)
    history = fit_resumable(trainer, work, dataclasses.replace(fit, write=work.write))
    return in_float32(model, arch, bundle, strategy), history


def save_trained(model, history, work, model_path, history_file):
    """A trained model (.keras at `model_path`) and its history (`history_file` in the run's
    folder, CSV), when this process writes the run's folder."""
    if work.write:
        export.save_keras(model, model_path)
        write_text(work.file(history_file), checkpoint.history_csv(history))
