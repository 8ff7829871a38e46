"""Hyperparameter search for distillation with keras-tuner: every trial is one
`tfkd.experiment.run` on the search's config with the trial's values.

    config = tfkd.experiment.RunConfig.from_flags(["--flagfile=configs/synthetic.flags"])
    results = tune(config, tuner="random", max_trials=10,
                   search_space={"temperature": [1, 2, 4, 8],
                                 "learning_rate": {"min": 1e-4, "max": 1e-2, "scale": "log"}})

or, with any keras-tuner tuner:

    hypermodel = DistillerHyperModel(config, space, directory="out")
    tuner = make_tuner("random", hypermodel, directory="out", max_trials=10)
    run_search(tuner)
    best = best_trial(tuner)

A search space maps a hyperparameter name to a list of choices or to a range
`{"min": a, "max": b, "scale": "linear" | "log", "step": s}`. The names are the flags of
`bin/distill`: the options of the chosen method (`temperature`, `alpha`, ...) and the training
hyperparameters in `TRAINING_HYPERPARAMETERS`.

The objective is the final student's accuracy on the validation split (`val_accuracy`), so that
`bin/distill` with the best trial's flags reproduces it; no trial reads the test split.
"""

from tfkd.tuning.hypermodel import OBJECTIVE, DistillerHyperModel
from tfkd.tuning.search import (
    MAX_CONSECUTIVE_FAILURES,
    SETUP_ERRORS,
    TUNERS,
    BayesianOptimization,
    Hyperband,
    RandomSearch,
    SearchError,
    best_trial,
    check_tuner,
    classify_failure,
    load_student,
    make_tuner,
    run_dir,
    run_search,
    trials_table,
)
from tfkd.tuning.shared_teachers import shared_teachers
from tfkd.tuning.space import (
    TRAINING_HYPERPARAMETERS,
    Hyperparameter,
    Tunable,
    default_search_space,
    load_search_space,
    parse_search_space,
    read_search_space,
    tunables,
)
from tfkd.tuning.tuner import tune

__all__ = [
    "MAX_CONSECUTIVE_FAILURES",
    "OBJECTIVE",
    "SETUP_ERRORS",
    "TRAINING_HYPERPARAMETERS",
    "TUNERS",
    "BayesianOptimization",
    "DistillerHyperModel",
    "Hyperband",
    "Hyperparameter",
    "RandomSearch",
    "SearchError",
    "Tunable",
    "best_trial",
    "check_tuner",
    "classify_failure",
    "default_search_space",
    "load_search_space",
    "load_student",
    "make_tuner",
    "parse_search_space",
    "read_search_space",
    "run_dir",
    "run_search",
    "shared_teachers",
    "trials_table",
    "tunables",
    "tune",
]
