"""Tuners that run each trial in its own folder and stop hopeless searches; the trials table."""

import os

import keras
import keras_tuner

from tfkd.tuning.hypermodel import OBJECTIVE, DistillerHyperModel

RUN_FOLDER = "run"  # a trial's tfkd.experiment.run output, inside keras-tuner's trial folder
TUNERS = ("random", "hyperband", "bayesian")
COMPLETED, FAILED = "COMPLETED", "FAILED"  # keras-tuner trial statuses
# A run of failed trials this long stops the search even after some trials completed.
MAX_CONSECUTIVE_FAILURES = 3
# Errors that come from the code or the machine, not from the hyperparameters of one trial.
SETUP_ERRORS = (ImportError, NameError, AttributeError, TypeError, NotImplementedError, OSError)


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
    completed = any(t.status == COMPLETED for t in oracle.trials.values())
    in_a_row = _failed_in_a_row(oracle) + 1
    if isinstance(error, SETUP_ERRORS):
        reason = "an error of the set-up, not of the hyperparameters, so every trial would fail"
    elif not completed:
        reason = "no trial has completed, so every trial would likely fail the same way"
    elif in_a_row >= MAX_CONSECUTIVE_FAILURES:
        reason = f"{in_a_row} trials failed in a row"
    else:
        return keras_tuner.errors.FailedTrialError(summary)
    return SearchError(
        f"trial {trial.trial_id} ({values}) failed with {summary}; {reason}. "
        "Stopped the search (TFKD_DEBUG=1 shows the traceback)"
    )


def run_dir(tuner, trial_id):
    """The folder of a trial's run: `<trial dir>/run` (student.keras, history.csv, ...)."""
    return os.path.join(tuner.get_trial_dir(trial_id), RUN_FOLDER)


class _RecordsTrials:
    """Tuner mix-in: runs every trial in `<trial dir>/run` and turns hopeless failures fatal."""

    def run_trial(self, trial, *args, **kwargs):
        if isinstance(self.hypermodel, DistillerHyperModel):
            kwargs["run_dir"] = run_dir(self, trial.trial_id)
        try:
            return super().run_trial(trial, *args, **kwargs)
        except keras_tuner.errors.FatalError:
            raise
        except Exception as error:  # noqa: BLE001 - every failure is classified
            raise classify_failure(self.oracle, trial, error) from error


class RandomSearch(_RecordsTrials, keras_tuner.RandomSearch):
    pass


class BayesianOptimization(_RecordsTrials, keras_tuner.BayesianOptimization):
    pass


class Hyperband(_RecordsTrials, keras_tuner.Hyperband):
    pass


def check_tuner(kind, max_trials, epochs):
    """Raises one ValueError naming the flag for a tuner that cannot run (before any work)."""
    if kind not in TUNERS:
        raise ValueError(f"--tuner must be one of {', '.join(TUNERS)}, got {kind!r}")
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
        raise ValueError(f"--max_trials must be an integer >= 1, got {max_trials}")
    if kind == "hyperband" and epochs < 2:
        raise ValueError("--tuner=hyperband needs --epochs >= 2 (its maximum epochs)")


def make_tuner(
    kind,
    hypermodel,
    directory,
    max_trials,
    max_epochs=None,
    seed=0,
    project_name="tuner",
    overwrite=False,
):
    """A keras-tuner tuner maximising `val_accuracy` that resumes from `directory`.

    kind: random, bayesian or hyperband. Hyperband trains trials for up to `max_epochs` epochs
    (default: the hypermodel's `schedule.epochs`), each from scratch for its budget, and is
    capped at `max_trials` trials too.
    """
    epochs = max_epochs or hypermodel.config.schedule.epochs
    check_tuner(kind, max_trials, epochs)
    # keras-tuner draws a random seed for a seed of 0: the search's values would then differ
    # from run to run, and a search killed in its first trial would not resume it.
    common_args = dict(
        hypermodel=hypermodel,
        objective=keras_tuner.Objective(OBJECTIVE, "max"),
        seed=seed + 1,
        directory=directory,
        project_name=project_name,
        overwrite=overwrite,
        max_retries_per_trial=0,
        # classify_failure decides when failures stop the search.
        max_consecutive_failed_trials=None,
    )
    if kind == "hyperband":
        tuner = Hyperband(max_epochs=epochs, **common_args)
        tuner.oracle.max_trials = max_trials
    else:
        tuner_class = RandomSearch if kind == "random" else BayesianOptimization
        try:
            tuner = tuner_class(max_trials=max_trials, **common_args)
        except ImportError as error:
            raise ValueError(
                f"--tuner={kind} needs scipy and scikit-learn: pip install "
                f"'keras-tuner[bayesian]' ({error})"
            ) from None
    # keras-tuner writes its tuner file after the first trial only: a search killed during
    # that trial would start afresh instead of resuming the trial.
    tuner.save()
    return tuner


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
    return sorted(
        rows, key=lambda row: (row.get(OBJECTIVE) is None, -(row.get(OBJECTIVE) or 0), row["trial"])
    )


def best_trial(tuner):
    return tuner.oracle.get_best_trials(1)[0]


def load_student(tuner, trial):
    """The final student of a trial, as saved by the runs of this module's tuners."""
    path = os.path.join(run_dir(tuner, trial.trial_id), "student.keras")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: the trial was not run by a tfkd tuner")
    return keras.saving.load_model(path)
