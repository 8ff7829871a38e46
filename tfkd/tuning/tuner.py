"""`tune(config, ...)`: the whole search `bin/tune` runs, resumable, and its outputs.

teachers (once) -> keras-tuner search, each trial `tfkd.experiment.run` on a derived config ->
the best trial's student measured on the test split (once), exported, and its flags written as
a `bin/distill` flagfile. Re-running the same search in the same folder resumes it.
"""

import dataclasses
import json
import os
import shutil
import time

from tfkd import data, experiment
from tfkd.atomic import write_text
from tfkd.exporting import student as export
from tfkd.tuning import search
from tfkd.tuning import trials as report
from tfkd.tuning.hypermodel import OBJECTIVE, DistillerHyperModel, finished_results
from tfkd.tuning.shared_teachers import teacher_specs
from tfkd.tuning.space import parse_search_space, read_search_space

SEARCH_FILE = "search.json"
TUNER_FOLDER = "tuner"
BASELINE_FOLDER = "baseline"


def default_output_dir(config):
    return os.path.join(
        "savedmodels", "tune-" + os.path.basename(experiment.default_output_dir(config))
    )


def search_settings(config, tuner, space_spec):
    """What the trials depend on; a search resumes only when these are unchanged."""
    return json.loads(
        json.dumps({**config.settings("search"), "tuner": tuner, "search_space": space_spec})
    )


def prepare_output_dir(output_dir, search, overwrite):
    """Creates or resumes `output_dir`; returns True when resuming an earlier search."""
    search_file = os.path.join(output_dir, SEARCH_FILE)
    if overwrite and os.path.isdir(output_dir):
        shutil.rmtree(output_dir)
    elif os.path.isfile(search_file):
        with open(search_file) as handle:
            experiment.refuse_other_settings(
                f"--output_dir {output_dir}", "a search", json.load(handle), search
            )
        return True
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"--output_dir {output_dir} exists and is not a folder")
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise ValueError(
            f"--output_dir {output_dir} exists and is not empty; pass --overwrite to replace it"
        )
    os.makedirs(output_dir, exist_ok=True)
    write_text(search_file, json.dumps(search, indent=2) + "\n")
    return False


def tune(config, tuner="random", max_trials=10, search_space=None):
    """Searches the hyperparameters of `config`'s distillation; returns results.json's dict.

    Args:
      config: a `tfkd.experiment.RunConfig`: every value not searched, the trial budget
        (`schedule.epochs`), and the search's output (`output.dir`, `export`, `baseline`,
        `overwrite`, `verbose`).
      tuner: random, hyperband or bayesian.
      max_trials: trials in all; a resumed search with a larger value adds trials.
      search_space: a JSON file, a dict (see `parse_search_space`), or None for
        `configs/search/<method>.json` or the method's default space (`read_search_space`).

    Writes to `config.output.dir`: trials.csv, trials.md, trials.png, best.flags,
    results.json, history.csv (the best trial's), the best student in `--export`'s formats,
    search.json, teachers/ (teachers trained here), tuner/ (keras-tuner's state and a `run/`
    folder per trial) and, with `--baseline`, baseline/.
    """
    if isinstance(search_space, dict):
        space_spec, source = search_space, "search space"
    else:
        space_spec, source = read_search_space(search_space, config.method.name)
    space = parse_search_space(space_spec, config.method.name, source)
    search.check_tuner(tuner, max_trials, config.schedule.epochs)
    output_dir = os.path.abspath(config.output.dir or default_output_dir(config))
    hypermodel = DistillerHyperModel(config, space, directory=output_dir)
    experiment.set_determinism(config)
    # Data, models and method checked before the folder exists: bad input leaves none.
    bundle = data.load(config.data)
    experiment.check_run(config, bundle)
    strategy = experiment.make_strategy(config)
    prepare_output_dir(
        output_dir, search_settings(config, tuner, space_spec), config.output.overwrite
    )
    seconds = {}
    start = time.time()
    base = hypermodel.base_config(bundle, strategy)
    if hypermodel.teacher_seconds:
        seconds["teachers"] = time.time() - start
    keras_tuner = search.make_tuner(
        tuner, hypermodel, output_dir, max_trials, seed=config.seed, project_name=TUNER_FOLDER
    )
    start = time.time()
    search.run_search(keras_tuner, verbose=config.output.verbose)
    seconds["search"] = time.time() - start

    rows = search.trials_table(keras_tuner)
    best = search.best_trial(keras_tuner)
    values = hypermodel.values(best.hyperparameters)
    epochs = best.hyperparameters.values.get("tuner/epochs")
    title = (
        f"{config.method.name} {config.student} on {config.data.dataset}: {len(rows)} "
        f"trials of --tuner={tuner}, best first, by the student's validation accuracy"
    )
    report.write_tables(output_dir, rows, hypermodel.space, title)
    best_run = search.run_dir(keras_tuner, best.trial_id)
    searched = ", ".join(f"{name}={value}" for name, value in values.items())
    distill_config = hypermodel.distill_config(best.hyperparameters, epochs)
    report.write_best_flags(
        os.path.join(output_dir, "best.flags"),
        distill_config,
        comments=(
            (
                f"bin/tune --tuner={tuner}, {source}: best of {len(rows)} trials, trial "
                f"{best.trial_id} ({os.path.relpath(best_run, output_dir)}), validation accuracy "
                f"{best.score:.4f}"
            ),
            f"searched: {searched}",
            "reproduce: bin/distill --flagfile=best.flags --output_dir=DIR",
        ),
    )
    shutil.copyfile(os.path.join(best_run, "history.csv"), os.path.join(output_dir, "history.csv"))

    # The test split, read once: the best trial's student (and the teachers, for reference).
    student = search.load_student(keras_tuner, best)
    results = {
        "dataset": config.data.dataset,
        "method": config.method.name,
        "tuner": tuner,
        "objective": OBJECTIVE,
        "trials": {
            status: sum(row["status"] == status for row in rows)
            for status in sorted({row["status"] for row in rows})
        },
        "best": {
            "trial": best.trial_id,
            "val_accuracy": float(best.score),
            "hyperparameters": values,
            "run": os.path.relpath(best_run, output_dir),
        },
    }
    if epochs is not None:
        results["best"]["epochs"] = int(epochs)
    results.update(teacher_results(config, base, hypermodel.method, bundle, strategy))
    results["student"] = {
        "arch": config.student,
        "accuracy": experiment.accuracy(student, bundle.test),
        "val_accuracy": experiment.accuracy(student, bundle.validation),
        "params": int(student.count_params()),
    }
    if config.output.baseline:
        results["baseline"], seconds["baseline"] = baseline(
            distill_config, bundle, strategy, output_dir
        )
    # A resumed search re-exports its (possibly new) best student over the previous one.
    results["exports"] = export.export_student(
        student,
        output_dir,
        config.output.export,
        test_data=bundle.test,
        train_images=bundle.train[0],
        tokenizer=bundle.tokenizer,
        settings=export.ExportSettings(verbose=config.output.verbose > 0, overwrite=True),
    )
    if bundle.is_text:  # beside the exported student, as a run writes it
        bundle.tokenizer.save(output_dir)
    results["flags"] = {
        **config.flag_values(),
        "tuner": tuner,
        "max_trials": max_trials,
        "search_space": search_space if isinstance(search_space, str) else None,
        "search_space_source": source,
    }
    results["best_flags"] = distill_config.flag_values()
    results["seconds"] = seconds
    write_text(os.path.join(output_dir, "results.json"), json.dumps(results, indent=2) + "\n")
    experiment.print_summary(results, output_dir)
    print(
        f"  best     trial {best.trial_id} ({os.path.relpath(best_run, output_dir)}) of "
        f"{len(rows)}, validation accuracy {best.score:.4f}: {searched}"
    )
    print(
        f"  search   {output_dir}: trials.csv, trials.md, trials.png, best.flags, {TUNER_FOLDER}/"
    )
    return results


def teacher_results(config, base, method, bundle, strategy):
    """results.json's "teacher" (or "teachers") entry: each teacher as given in `config`, the
    file the trials loaded (`base`'s), its test accuracy."""
    entries = []
    for (name, flag, spec, seed), given in zip(
        teacher_specs(base, method), teacher_specs(config, method)
    ):
        teacher, _, _ = experiment.get_teacher(spec, name, flag, base, bundle, strategy, None, seed)
        entries.append(
            {
                "arch": given[2],
                "path": spec,
                "accuracy": experiment.accuracy(teacher, bundle.test),
                "params": int(teacher.count_params()),
            }
        )
    if method.multi_teacher:
        return {"teachers": entries}
    return {"teacher": entries[0]} if entries else {}


def baseline(config, bundle, strategy, output_dir):
    """The student alone with the best trial's schedule, trained once in baseline/ (kept while
    the best trial stays the same); returns ({"accuracy", "val_accuracy"}, seconds)."""
    folder = os.path.join(output_dir, BASELINE_FOLDER)
    finished = finished_results(
        dataclasses.replace(config, output=dataclasses.replace(config.output, dir=folder))
    )
    if finished is not None:
        return finished["baseline"], finished["seconds"]
    shutil.rmtree(folder, ignore_errors=True)  # the baseline of an earlier best trial
    key = json.loads(json.dumps(config.settings("run")))
    # An unfinished baseline of an earlier best trial is started over.
    other = experiment.WorkDir(folder, key).holds_other_settings()
    work = experiment.WorkDir(folder, key, overwrite=other).open()
    model, seconds = experiment.baseline(config, bundle, strategy, work)
    entry = {
        "accuracy": experiment.accuracy(model, bundle.test),
        "val_accuracy": experiment.accuracy(model, bundle.validation),
    }
    work.commit({"baseline": entry, "seconds": seconds, "flags": key})
    return entry, seconds
