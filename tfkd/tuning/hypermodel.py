"""`DistillerHyperModel`: a keras-tuner HyperModel building a student and a method distiller."""
import csv
import dataclasses
import io
import math
import os
import time

import keras
import keras_tuner
import tensorflow as tf

from tfkd import export, methods, models, training
from tfkd.cli import common
from tfkd.io import write_text
from tfkd.tuning.space import TRAINING_HYPERPARAMETERS, parse_search_space


class DistillerHyperModel(keras_tuner.HyperModel):
    """Builds a student and a `method` distiller from searched hyperparameters.

    The teacher is built once by the caller and shared by every trial. `fit` trains on the
    bundle's train split, validates on its validation split and returns the last epoch's
    metrics; the objective is `val_accuracy`. Call `tuner.search()` without data.

    Args:
      method: a registered method name.
      student: a registered architecture name; a fresh student is built for every trial.
      teacher: the trained teacher `keras.Model` (None for methods that need none).
      bundle: the `DataBundle`; its test split is dropped here and never read.
      search_space: a dict as in `parse_search_space` or a tuple of `Hyperparameter`.
      train_config: `TrainConfig` for everything not searched (its `epochs` is the budget).
      options: method options not searched (default: the options' defaults).
      strategy: tf.distribute strategy (default: the current one).
      augment, seed, verbose: as for `bin/distill`; every trial starts from the same seed.
    """

    def __init__(self, method, student, teacher, bundle, search_space, train_config=None,
                 options=None, strategy=None, augment=False, seed=0, verbose=0):
        super().__init__(name=f"{method}-{student}")
        self.method_name = method
        self.method = methods.METHODS.get(method)
        if student not in models.MODELS:
            raise ValueError(f"student: {student!r} is not a known model; known: "
                             f"{', '.join(models.names())}")
        if self.method.needs_teacher and teacher is None:
            raise ValueError(f"method {method} needs a teacher; pass teacher=")
        if not len(bundle.validation[1]):
            raise ValueError("the objective is the validation accuracy but the data set has no "
                             "validation split: set --validation_fraction > 0")
        self.student_arch = student
        self.teacher = teacher
        # The test split is kept out of reach of every trial.
        self.bundle = dataclasses.replace(bundle, test=(bundle.test[0][:0], bundle.test[1][:0]))
        self.space = (parse_search_space(search_space, method)
                      if isinstance(search_space, dict) else tuple(search_space))
        self.train_config = train_config or training.TrainConfig()
        self.options = {option.name: option.default for option in self.method.options}
        self.options.update(options or {})
        self.strategy = strategy or tf.distribute.get_strategy()
        self.augment, self.seed, self.verbose = augment, seed, verbose
        self.last_student, self.last_history = None, None
        self._check_training_values()

    def _check_training_values(self):
        """TrainConfig's own checks on every choice and range end of a training flag."""
        for parameter in self.space:
            if parameter.name not in TRAINING_HYPERPARAMETERS or parameter.name == "augment":
                continue
            for value in parameter.extremes():
                try:
                    dataclasses.replace(self.train_config, **{parameter.name: value})
                except ValueError as error:
                    raise ValueError(f"search space: {parameter.name}={value!r}: {error}") from None

    def values(self, hp):
        """The searched flag values of `hp` (declaring them when they are new)."""
        return {parameter.name: parameter.declare(hp) for parameter in self.space}

    def configs(self, hp):
        """(TrainConfig, method options, augment) for the hyperparameters `hp`."""
        values = self.values(hp)
        train = {k: v for k, v in values.items()
                 if k in TRAINING_HYPERPARAMETERS and k != "augment"}
        options = {**self.options, **{k: v for k, v in values.items() if k in self.options}}
        return (dataclasses.replace(self.train_config, **train), options,
                values.get("augment", self.augment))

    def build(self, hp):
        config, options, _ = self.configs(hp)
        keras.utils.set_random_seed(self.seed)
        student = common.build_model(self.student_arch, self.bundle, self.strategy)
        steps = math.ceil(len(self.bundle.train[1]) / config.batch_size)
        with self.strategy.scope():
            distiller = self.method.build(student, self.teacher, self.bundle, options)
            distiller.compile(optimizer=training.make_optimizer(config, steps),
                              metrics=["accuracy"])
            # Built now, so that keras-tuner can save and (Hyperband) reload its weights.
            distiller.build((None, *self.bundle.input_shape))
        return distiller

    def fit(self, hp, model, *args, **kwargs):
        if args or {"x", "y", "validation_data"} & set(kwargs):
            raise keras_tuner.errors.FatalValueError(
                "DistillerHyperModel reads its data from the bundle: call search() without data")
        config, _, augment = self.configs(hp)
        train, validation, _ = common.datasets(self.bundle, config.batch_size, augment, self.seed)
        kwargs.setdefault("epochs", config.epochs)
        kwargs.setdefault("verbose", self.verbose)
        start = time.time()
        history = model.fit(train, validation_data=validation, shuffle=False, **kwargs)
        self.last_student, self.last_history = model.student, history.history
        final = {name: float(values[-1]) for name, values in history.history.items() if values}
        final["seconds"] = time.time() - start
        return final

    def save_last(self, folder):
        """Writes the last fitted student (`student.keras`) and its history (`history.csv`)."""
        if self.last_student is None:
            return
        export.save_keras(self.last_student, os.path.join(folder, "student.keras"))
        names = list(self.last_history)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["epoch", *names])
        for epoch, row in enumerate(zip(*(self.last_history[name] for name in names))):
            writer.writerow([epoch, *map(float, row)])
        write_text(os.path.join(folder, "history.csv"), buffer.getvalue())
