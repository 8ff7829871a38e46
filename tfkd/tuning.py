"""Hyperparameter search for distillation with keras-tuner.

    space = parse_search_space({"temperature": [1, 2, 4, 8],
                                "learning_rate": {"min": 1e-4, "max": 1e-2, "scale": "log"}},
                               method="kd")
    hypermodel = DistillerHyperModel("kd", "mlp_small", teacher, bundle, space)
    tuner = make_tuner("random", hypermodel, directory="out", max_trials=10)
    run_search(tuner)
    best = tuner.oracle.get_best_trials(1)[0]

A search space maps a hyperparameter name to a list of choices or to a range
`{"min": a, "max": b, "scale": "linear" | "log", "step": s}`. The names are the flags of
`bin/distill`: the options of the chosen method (`temperature`, `alpha`, ...) and the training
hyperparameters in `TRAINING_HYPERPARAMETERS`.

The objective is the student's accuracy on the validation split at the end of training
(`val_accuracy`), so that `bin/distill` with the best values reproduces the measured run. The
hypermodel holds the data set without its test split, so no trial can read it.
"""
import csv
import dataclasses
import io
import json
import math
import os
import time

import keras
import keras_tuner
import tensorflow as tf

from tfkd import export, methods, models, training
from tfkd.cli import common
from tfkd.io import write_text

OBJECTIVE = "val_accuracy"
TUNERS = ("random", "hyperband", "bayesian")
SCALES = ("linear", "log")
COMPLETED, FAILED = "COMPLETED", "FAILED"  # keras-tuner trial statuses
# A run of failed trials this long stops the search even after some trials completed.
MAX_CONSECUTIVE_FAILURES = 3
# Errors that come from the code or the machine, not from the hyperparameters of one trial.
SETUP_ERRORS = (ImportError, NameError, AttributeError, TypeError, NotImplementedError, OSError)


@dataclasses.dataclass(frozen=True)
class Tunable:
    """What a tunable flag accepts: kind is float, int, bool or string; choices for enums."""

    kind: str
    choices: tuple = ()


# Training flags that may be searched. `epochs` is the trial budget (Hyperband's maximum), not a
# hyperparameter.
TRAINING_HYPERPARAMETERS = {
    "learning_rate": Tunable("float"),
    "weight_decay": Tunable("float"),
    "warmup_epochs": Tunable("float"),
    "batch_size": Tunable("int"),
    "optimizer": Tunable("string", training.OPTIMIZERS),
    "lr_schedule": Tunable("string", training.SCHEDULES),
    "augment": Tunable("bool"),
}


def _option_tunable(option):
    if option.choices:
        return Tunable("string", tuple(option.choices))
    for kind, python_type in (("bool", bool), ("int", int), ("float", float)):
        if isinstance(option.default, python_type):
            return Tunable(kind)
    return Tunable("string")


def tunables(method):
    """Name -> Tunable for every hyperparameter a search over `method` may set."""
    options = {option.name: _option_tunable(option)
               for option in methods.METHODS.get(method).options}
    return {**options, **TRAINING_HYPERPARAMETERS}


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
    """One searched flag: a list of choices, or a [low, high] range on a linear or log scale."""

    name: str
    kind: str
    values: tuple = ()
    low: float = None
    high: float = None
    scale: str = "linear"
    step: float = None

    def declare(self, hp):
        """Declares this hyperparameter on a keras_tuner.HyperParameters; returns its value."""
        if self.values:
            if self.kind == "bool" and set(self.values) == {True, False}:
                return hp.Boolean(self.name)
            return hp.Choice(self.name, list(self.values), ordered=self.kind in ("int", "float"))
        if self.kind == "int":
            step = int(self.step or 1) if self.scale == "linear" else None
            return hp.Int(self.name, int(self.low), int(self.high), step=step, sampling=self.scale)
        return hp.Float(self.name, self.low, self.high, step=self.step, sampling=self.scale)

    def extremes(self):
        return self.values or (self.low, self.high)


def _search_space_error(source, message):
    return ValueError(f"{source}: {message}")


def _unknown_name_message(name, method, known):
    owners = [other for other in methods.METHODS.names()
              if any(option.name == name for option in methods.METHODS.get(other).options)]
    if owners:
        return (f"{name!r} is an option of method {', '.join(owners)}, not of --method={method}; "
                f"tunable for {method}: {', '.join(sorted(known))}")
    return (f"{name!r} is not a hyperparameter of any method in this build; tunable for "
            f"--method={method}: {', '.join(sorted(known))}")


def _check_value(source, name, tunable, value):
    """`value` converted to the flag's type, or a ValueError saying what was expected."""
    if tunable.kind == "bool":
        ok = isinstance(value, bool)
    elif tunable.kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tunable.kind == "float":
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value))
    else:
        ok = isinstance(value, str) and (not tunable.choices or value in tunable.choices)
    if not ok:
        expected = {"bool": "true or false", "int": "an integer", "float": "a finite number"}.get(
            tunable.kind, "one of " + ", ".join(tunable.choices) if tunable.choices else "a string")
        raise _search_space_error(source, f"{name}: {value!r} is not {expected}")
    return float(value) if tunable.kind == "float" else value


def _parse_entry(source, name, tunable, spec):
    if isinstance(spec, dict) and set(spec) == {"values"}:
        spec = spec["values"]
    if isinstance(spec, list):
        if not spec:
            raise _search_space_error(source, f"{name}: the list of choices is empty")
        values = tuple(_check_value(source, name, tunable, value) for value in spec)
        if len(set(values)) != len(values):
            raise _search_space_error(source, f"{name}: the choices {spec} repeat a value")
        return Hyperparameter(name, tunable.kind, values=values)
    if not isinstance(spec, dict):
        raise _search_space_error(
            source, f"{name}: expected a list of choices or a range "
                    f'{{"min": ..., "max": ..., "scale": "linear" or "log"}}, got {spec!r}')
    unknown = sorted(set(spec) - {"min", "max", "scale", "step"})
    if unknown:
        raise _search_space_error(source, f"{name}: unknown range field(s) {', '.join(unknown)}; "
                                          "a range has min, max, scale and step")
    if tunable.kind not in ("int", "float"):
        raise _search_space_error(source, f"{name} is a {tunable.kind} flag: give a list of "
                                          "choices, not a range")
    if "min" not in spec or "max" not in spec:
        raise _search_space_error(source, f"{name}: a range needs both min and max")
    low = _check_value(source, name, tunable, spec["min"])
    high = _check_value(source, name, tunable, spec["max"])
    if not low < high:
        raise _search_space_error(source, f"{name}: min must be < max, got {low} and {high}")
    scale = spec.get("scale", "linear")
    if scale not in SCALES:
        raise _search_space_error(source, f"{name}: scale must be one of {', '.join(SCALES)}, "
                                          f"got {scale!r}")
    if scale == "log" and low <= 0:
        raise _search_space_error(source, f"{name}: a log scale needs min > 0, got {low}")
    step = spec.get("step")
    if step is not None:
        step = _check_value(source, name, tunable, step)
        if step <= 0 or scale != "linear":
            raise _search_space_error(source, f"{name}: step must be > 0 and needs a linear "
                                              "scale")
    return Hyperparameter(name, tunable.kind, low=low, high=high, scale=scale, step=step)


def parse_search_space(spec, method, source="search space"):
    """A JSON-like dict name -> choices or range -> tuple of Hyperparameter.

    Raises ValueError naming `source` and the offending entry for an unknown name, a name of
    another method, a value of the wrong type or outside the flag's choices, and a bad range.
    """
    if not isinstance(spec, dict) or not spec:
        raise _search_space_error(source, "expected a non-empty JSON object mapping "
                                          "hyperparameter names to choices or ranges")
    known = tunables(method)
    space = []
    for name, entry in spec.items():
        if name not in known:
            raise _search_space_error(source, _unknown_name_message(name, method, known))
        space.append(_parse_entry(source, name, known[name], entry))
    return tuple(space)


def load_search_space(path, method, flag="--search_space"):
    """Reads and parses a search-space JSON file; errors name the flag and the file."""
    source = f"{flag} {path}"
    if not path:
        raise ValueError(f"{flag} is required: a JSON file mapping hyperparameter names to "
                         "choices or ranges (see configs/search/)")
    if not os.path.isfile(path):
        raise ValueError(f"{source} does not exist")
    with open(path) as handle:
        try:
            spec = json.load(handle)
        except json.JSONDecodeError as error:
            raise _search_space_error(source, f"not valid JSON ({error})") from None
    return parse_search_space(spec, method, source)


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


class SearchError(keras_tuner.errors.FatalValueError):
    """A trial failed in a way that every trial would: stops the search with one message."""


def _summary(error):
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1] if lines else ''}".strip().rstrip(":.")


def _failed_in_a_row(oracle):
    count = 0
    for trial_id in reversed(oracle.end_order):
        if oracle.trials[trial_id].status != FAILED:
            break
        count += 1
    return count


def classify_failure(oracle, trial, error):
    """The exception to raise for a trial that raised `error`.

    keras-tuner records any exception as a failed trial and carries on, so a search whose every
    trial fails (a missing module, a bad flag) used to end "normally" with nothing learned. A
    failure becomes one fatal `SearchError` when it comes from the set-up rather than the
    hyperparameters, when no trial has completed yet, or after MAX_CONSECUTIVE_FAILURES failures
    in a row; otherwise the trial is marked failed and the search goes on.
    """
    summary = _summary(error)
    values = ", ".join(f"{k}={v}" for k, v in trial.hyperparameters.values.items())
    completed = any(t.status == COMPLETED
                    for t in oracle.trials.values())
    in_a_row = _failed_in_a_row(oracle) + 1
    if isinstance(error, SETUP_ERRORS):
        reason = "an error of the set-up, not of the hyperparameters, so every trial would fail"
    elif not completed:
        reason = "no trial has completed, so every trial would likely fail the same way"
    elif in_a_row >= MAX_CONSECUTIVE_FAILURES:
        reason = f"{in_a_row} trials failed in a row"
    else:
        return keras_tuner.errors.FailedTrialError(summary)
    return SearchError(f"trial {trial.trial_id} ({values}) failed with {summary}; {reason}. "
                       "Stopped the search (TFKD_DEBUG=1 shows the traceback)")


class _RecordsTrials:
    """Tuner mix-in: saves every trial's final student and turns hopeless failures fatal."""

    def run_trial(self, trial, *args, **kwargs):
        try:
            results = super().run_trial(trial, *args, **kwargs)
        except keras_tuner.errors.FatalError:
            raise
        except Exception as error:  # noqa: BLE001 - every failure is classified
            raise classify_failure(self.oracle, trial, error) from error
        if isinstance(self.hypermodel, DistillerHyperModel):
            self.hypermodel.save_last(self.get_trial_dir(trial.trial_id))
        return results


class RandomSearch(_RecordsTrials, keras_tuner.RandomSearch):
    pass


class BayesianOptimization(_RecordsTrials, keras_tuner.BayesianOptimization):
    pass


class Hyperband(_RecordsTrials, keras_tuner.Hyperband):
    pass


def make_tuner(kind, hypermodel, directory, max_trials, max_epochs=None, seed=0,
               project_name="tuner", overwrite=False):
    """A keras-tuner tuner maximising `val_accuracy` that resumes from `directory`.

    kind: random, bayesian or hyperband. Hyperband trains trials for up to `max_epochs` epochs
    (default: the hypermodel's epochs) and is capped at `max_trials` trials too.
    """
    if kind not in TUNERS:
        raise ValueError(f"--tuner must be one of {', '.join(TUNERS)}, got {kind!r}")
    if max_trials < 1:
        raise ValueError(f"--max_trials must be an integer >= 1, got {max_trials}")
    common_args = dict(hypermodel=hypermodel, objective=keras_tuner.Objective(OBJECTIVE, "max"),
                       seed=seed, directory=directory, project_name=project_name,
                       overwrite=overwrite, max_retries_per_trial=0,
                       # classify_failure decides when failures stop the search.
                       max_consecutive_failed_trials=None)
    if kind == "hyperband":
        epochs = max_epochs or hypermodel.train_config.epochs
        if epochs < 2:
            raise ValueError("--tuner=hyperband needs --epochs >= 2 (its maximum epochs)")
        tuner = Hyperband(max_epochs=epochs, **common_args)
        tuner.oracle.max_trials = max_trials
        return tuner
    tuner_class = RandomSearch if kind == "random" else BayesianOptimization
    try:
        return tuner_class(max_trials=max_trials, **common_args)
    except ImportError as error:
        raise ValueError(f"--tuner={kind} needs scipy and scikit-learn: pip install "
                         f"'keras-tuner[bayesian]' ({error})") from None


def run_search(tuner, **search_kwargs):
    """`tuner.search(...)`, then a `SearchError` when no trial has completed."""
    tuner.search(**search_kwargs)
    trials = list(tuner.oracle.trials.values())
    if not any(t.status == COMPLETED for t in trials):
        failures = [t for t in trials if t.message]
        detail = f": {failures[-1].message.strip().splitlines()[-1]}" if failures else ""
        raise SearchError(f"no trial completed out of {len(trials)}{detail}")
    return tuner


def trials_table(tuner):
    """One dict per trial, best first: trial, status, each searched value, final metrics."""
    names = [parameter.name for parameter in getattr(tuner.hypermodel, "space", ())]
    rows = []
    for trial in tuner.oracle.trials.values():
        row = {"trial": trial.trial_id, "status": trial.status}
        values = trial.hyperparameters.values
        row.update({name: values.get(name) for name in names or values})
        if "tuner/epochs" in values:  # Hyperband trains trials for different budgets
            row["epochs"] = values["tuner/epochs"]
        for name in sorted(trial.metrics.metrics, key=lambda n: (n != OBJECTIVE, n)):
            row[name] = float(trial.metrics.get_last_value(name))
        if trial.message:
            row["error"] = trial.message.strip().splitlines()[-1]
        rows.append(row)
    return sorted(rows, key=lambda row: (row.get(OBJECTIVE) is None, -(row.get(OBJECTIVE) or 0),
                                         row["trial"]))


def best_trial(tuner):
    return tuner.oracle.get_best_trials(1)[0]


def load_student(tuner, trial):
    """The final student of a trial, as saved by the tuners of this module."""
    path = os.path.join(tuner.get_trial_dir(trial.trial_id), "student.keras")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: the trial was not run by a tfkd tuner")
    return keras.saving.load_model(path)
