"""`DistillerHyperModel`: a keras-tuner HyperModel whose every trial is `tfkd.experiment.run`."""

import csv
import dataclasses
import hashlib
import json
import os

import keras
import keras_tuner

from tfkd import experiment, settings
from tfkd.experiment.config import COMMAND_LINE
from tfkd.settings import ConfigError
from tfkd.tuning.shared_teachers import shared_teachers
from tfkd.tuning.space import TRAINING_HYPERPARAMETERS, parse_search_space

OBJECTIVE = "val_accuracy"
RUNS_FOLDER = "runs"  # trial runs of tuners that do not name a folder (keras-tuner's own)


class DistillerHyperModel(keras_tuner.HyperModel):
    """Search over a distillation run: a trial is `tfkd.experiment.run(trial_config(hp))`.

    The trial's config is `config` with the searched values put in (training flags in
    `schedule`, method options in `method.options`, `augment` at the top), Hyperband's epoch
    budget as `schedule.epochs`, its own output folder, and a trial's output: nothing read from
    the test split (`output.evaluate_test=False`, `teaching.test_every=0`), only `student.keras`
    exported, no baseline, and `overwrite=False`, so a killed trial resumes where it stopped.
    The objective is the final student's validation accuracy, `results["student"]
    ["val_accuracy"]`, so `bin/distill` with the trial's flags reproduces it.

    Teachers given as architectures are trained once, before the first trial, in
    `<directory>/teachers/` (see `tfkd.tuning.shared_teachers.shared_teachers`).

    Args:
      config: the `tfkd.experiment.RunConfig` of the search; `schedule.epochs` is the trial
        budget (Hyperband's maximum).
      search_space: a dict as in `parse_search_space`, or a tuple of `Hyperparameter`.
      directory: where shared teachers are trained and, for a tuner other than
        `tfkd.tuning`'s (which run each trial in `<trial dir>/run/`), where trials run:
        `<directory>/runs/<a key of the trial's flags>/`.
    """

    def __init__(self, config, search_space, directory=None):
        super().__init__(name=f"{config.method.name}-{config.student}")
        self.method = experiment.check(config)
        if not config.data.validation_fraction > 0:
            raise ValueError(
                "--validation_fraction must be > 0: the search maximises the "
                "validation accuracy and never looks at the test split"
            )
        self.config = config
        self.space = (
            parse_search_space(search_space, config.method.name)
            if isinstance(search_space, dict)
            else tuple(search_space)
        )
        self.directory = directory
        self.option_names = {option.name for option in self.method.options}
        self.teacher_seconds = {}
        self._base = None
        self._check_training_values()

    def _check_training_values(self):
        """TrainConfig's own checks on every choice and range end of a training flag."""
        for parameter in self.space:
            if parameter.name not in TRAINING_HYPERPARAMETERS or parameter.name == "augment":
                continue
            for value in parameter.extremes():
                try:
                    dataclasses.replace(self.config.schedule, **{parameter.name: value})
                except ConfigError as error:  # the search space speaks in flags
                    error = error.within("schedule").named(COMMAND_LINE.flag_name)
                    raise ValueError(f"search space: {parameter.name}={value!r}: {error}") from None

    def base_config(self, bundle=None, strategy=None):
        """`config` with its teachers trained once (on the first call) and loaded from files.

        bundle, strategy: the data set and strategy to train them with, if already at hand.
        """
        if self._base is None:
            self._base, self.teacher_seconds = shared_teachers(
                self.config, self.directory, bundle, strategy
            )
        return self._base

    def values(self, hp):
        """The searched flag values of `hp` (declaring them when they are new)."""
        return {parameter.name: parameter.declare(hp) for parameter in self.space}

    def trial_config(self, hp, epochs=None, output_dir=None):
        """The RunConfig of the trial with hyperparameters `hp` (see the class docstring)."""
        base = self.base_config()
        values = self.values(hp)
        schedule = {
            name: value
            for name, value in values.items()
            if name in TRAINING_HYPERPARAMETERS and name != "augment"
        }
        if epochs is not None:
            schedule["epochs"] = int(epochs)
        options = {name: value for name, value in values.items() if name in self.option_names}
        cache = base.cache
        if cache.mode == "memory" and self.directory is not None:
            # One teacher pass for the whole search: the trials share a disk entry (memory and
            # disk caches give identical students).
            cache = dataclasses.replace(
                cache, mode="disk", dir=os.path.join(os.path.abspath(self.directory), "cache")
            )
        return dataclasses.replace(
            base,
            cache=cache,
            schedule=dataclasses.replace(base.schedule, **schedule),
            method=dataclasses.replace(base.method, options={**base.method.options, **options}),
            augment=values.get("augment", base.augment),
            teaching=dataclasses.replace(base.teaching, test_every=0),
            output=dataclasses.replace(
                base.output,
                dir=output_dir,
                overwrite=False,
                export=("keras",),
                baseline=False,
                evaluate_test=False,
            ),
        )

    def distill_config(self, hp, epochs=None):
        """The trial's config as `bin/distill` should run it: the search's output flags (its
        --export, --baseline, --test_every; no --output_dir) and the test split evaluated."""
        trial = self.trial_config(hp, epochs)
        return dataclasses.replace(
            trial,
            teaching=dataclasses.replace(
                trial.teaching, test_every=self.config.teaching.test_every
            ),
            output=dataclasses.replace(
                self.config.output, dir=None, overwrite=False, evaluate_test=True
            ),
        )

    def build(self, hp):
        """Declares the search space on `hp`; returns a placeholder model without weights.

        keras-tuner requires `build` to return a `keras.Model`, but a trial here is a whole
        `tfkd.experiment.run` (teachers loaded, calibration, curriculum, the method's
        distiller, resumable checkpoints), which `fit` builds and trains; the placeholder is
        never trained and only carries keras-tuner's checkpoint bookkeeping.
        """
        self.values(hp)
        return keras.Sequential([keras.Input((1,)), keras.layers.Identity()], name="trial")

    def fit(self, hp, model, *args, run_dir=None, **kwargs):
        """Runs the trial; returns {"val_accuracy": final student's validation accuracy, and
        the last epoch's other metrics}.

        Args:
          run_dir: the trial's output folder (tfkd's tuners pass `<trial dir>/run`).
          kwargs: keras-tuner's; `epochs` (Hyperband's budget for the trial) sets
            `schedule.epochs`, and the trial trains from scratch for it.
        """
        if args or {"x", "y", "validation_data"} & set(kwargs):
            raise keras_tuner.errors.FatalValueError(
                "DistillerHyperModel reads its data from the config: call search() without data"
            )
        callbacks = list(kwargs.get("callbacks") or [])
        foreign = [type(c).__name__ for c in callbacks if not _from_keras_tuner(c)]
        if foreign:
            raise keras_tuner.errors.FatalValueError(
                f"search() callbacks are not run ({', '.join(foreign)}): every trial is a "
                "tfkd.experiment.run, which writes its own TensorBoard logs in its folder"
            )
        epochs = kwargs.get("epochs")
        if run_dir is None:
            run_dir = self._keyed_run_dir(hp, epochs)
        config = self.trial_config(hp, epochs, run_dir)
        results = finished_results(config) or experiment.run(config)
        metrics = {**last_epoch(run_dir), OBJECTIVE: float(results["student"]["val_accuracy"])}
        # keras-tuner's own callbacks see the trial as one epoch: its checkpoint (which
        # Hyperband reloads into the placeholder) is written as after a `model.fit`.
        for callback in callbacks:
            callback.set_model(model)
            callback.on_epoch_end(config.schedule.epochs - 1, dict(metrics))
        return metrics

    def _keyed_run_dir(self, hp, epochs):
        if self.directory is None:
            raise keras_tuner.errors.FatalValueError(
                "DistillerHyperModel needs directory= with a tuner other than tfkd.tuning's: "
                "it is where the trials' runs are written"
            )
        key = json.dumps(self.trial_config(hp, epochs).settings("run"), sort_keys=True, default=str)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return os.path.abspath(os.path.join(self.directory, RUNS_FOLDER, digest))


def _from_keras_tuner(callback):
    return type(callback).__module__.startswith("keras_tuner")


def finished_results(config):
    """results.json of a finished run of `config` in `config.output.dir`, else None.

    A search killed after a trial's run finished but before keras-tuner recorded it re-runs the
    trial; its run folder is then complete and is read instead of trained again.
    """
    path = os.path.join(config.output.dir, "results.json")
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        results = json.load(handle)
    wanted = json.loads(json.dumps(config.settings("run")))
    ran = results.get("flags", {})
    # results.json's flags also hold what only reports; the resume key decides.
    if settings.changed({name: ran.get(name) for name in wanted}, wanted):
        return None  # run() refuses the occupied folder with one clear error
    return results


def last_epoch(run_dir):
    """The last row of `<run_dir>/history.csv` as {metric: float} (empty when missing)."""
    path = os.path.join(run_dir, "history.csv")
    if not os.path.isfile(path):
        return {}
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    metrics = {}
    for name, value in rows[-1].items():
        if name == "epoch" or value in (None, ""):
            continue
        try:
            metrics[name] = float(value)
        except ValueError:
            continue
    return metrics
