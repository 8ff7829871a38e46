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
from tfkd.tuning.hypermodel import DistillerHyperModel
from tfkd.tuning.search import (MAX_CONSECUTIVE_FAILURES, OBJECTIVE, SETUP_ERRORS, TUNERS,
                                BayesianOptimization, Hyperband, RandomSearch, SearchError,
                                best_trial, classify_failure, load_student, make_tuner, run_search,
                                trials_table)
from tfkd.tuning.space import (TRAINING_HYPERPARAMETERS, Hyperparameter, Tunable,
                               load_search_space, parse_search_space, tunables)

__all__ = ["DistillerHyperModel", "Hyperparameter", "SearchError", "load_search_space",
           "make_tuner", "parse_search_space", "run_search", "trials_table", "best_trial",
           "load_student", "tunables", "OBJECTIVE", "TUNERS", "TRAINING_HYPERPARAMETERS",
           "MAX_CONSECUTIVE_FAILURES", "SETUP_ERRORS", "Tunable", "classify_failure",
           "RandomSearch", "BayesianOptimization", "Hyperband"]
