"""The teachers of a search, trained once: `shared_teachers(config, directory)`.

A teacher given as an architecture would be trained again by every trial's run. Here it is
trained once, exactly as `bin/distill` trains it (`tfkd.experiment.get_teacher`, same
seed), into `<directory>/teachers/`, and the search's config names the saved `.keras` files
instead, so every trial, and `bin/distill --flagfile=best.flags`, loads the same teacher.
"""

import dataclasses
import json
import os
import time

from tfkd import data, experiment

FOLDER = "teachers"
RESULTS_FILE = "results.json"


def teacher_specs(config, method):
    """[(name, flag, spec, seed)] of the teachers a run of `config` uses, as `run()` names them."""
    if method.multi_teacher:
        return [
            (f"teacher_{k}", "--teachers", spec, config.seed + k)
            for k, spec in enumerate(config.teacher.specs)
        ]
    if method.needs_teacher:
        return [("teacher", "--teacher", config.teacher.spec, config.seed)]
    return []


def teacher_settings(config, method):
    """The flags a trained teacher depends on (`RunConfig.settings("teachers")`: the data, the
    teachers, the training schedule but its epochs, --augment, --deterministic, the strategy)."""
    return json.loads(
        json.dumps({**config.settings("teachers"), "multi_teacher": method.multi_teacher})
    )


def shared_teachers(config, directory, bundle=None, strategy=None):
    """`config` with every teacher given as an architecture replaced by the `.keras` file of
    that teacher, trained once in `<directory>/teachers/` (a re-run reuses it; an interrupted
    training resumes from its last epoch). Loaded teachers keep their path, made absolute.
    `bundle` and `strategy`: the loaded data set and the strategy, when the caller has them.

    Returns:
      (config, seconds): seconds by teacher name for the teachers trained by this call.
    Raises:
      ValueError: a teacher to train and no `directory`; a folder trained with other settings;
        --teacher_input_scale != 1 with a mix of architectures and files under --teachers (the
        scale applies to every loaded teacher, the trained ones included).
    """
    method = experiment.check(config)
    specs = teacher_specs(config, method)
    to_train = [entry for entry in specs if not experiment.is_model_path(entry[2])]
    paths = {
        name: os.path.abspath(spec)
        for name, _, spec, _ in specs
        if name not in {entry[0] for entry in to_train}
    }
    seconds = {}
    if to_train:
        if directory is None:
            raise ValueError(
                f"{to_train[0][1]}: {to_train[0][2]} is an architecture to train; "
                "pass a directory to train it in, once for every trial"
            )
        if paths and config.teacher.input_scale != 1.0:
            raise ValueError(
                f"--teacher_input_scale={config.teacher.input_scale} scales every loaded teacher, "
                "and a search loads the teachers it trains too: train the architectures among "
                "--teachers first, or give only files"
            )
        folder = os.path.abspath(os.path.join(directory, FOLDER))
        seconds = _train(
            config, to_train, folder, teacher_settings(config, method), bundle, strategy
        )
        paths.update({name: os.path.join(folder, f"{name}.keras") for name, *_ in to_train})
    names = [name for name, *_ in specs]
    if method.multi_teacher:
        teacher = dataclasses.replace(config.teacher, specs=tuple(paths[n] for n in names))
    elif names:
        teacher = dataclasses.replace(config.teacher, spec=paths["teacher"])
    else:
        return config, seconds
    if to_train:
        teacher = dataclasses.replace(teacher, input_scale=1.0)
    return dataclasses.replace(config, teacher=teacher), seconds


def _train(config, to_train, folder, trained_with, bundle, strategy):
    """Trains `to_train` in `folder` (through `<folder>.partial/`) unless it holds them."""
    results_file = os.path.join(folder, RESULTS_FILE)
    if os.path.isfile(results_file):
        with open(results_file) as handle:
            done = json.load(handle)
        experiment.refuse_other_settings(
            folder, "the teachers of a search", done.get("settings", {}), trained_with
        )
        experiment.announce_reuse(f"the teachers of this search from {folder}")
        return {}
    work = experiment.WorkDir(folder, trained_with).open()
    experiment.set_determinism(config)
    bundle = bundle or data.load(config.data)
    if bundle.is_text:  # beside the teachers, as a run writes it beside its models
        bundle.tokenizer.save(work.path)
    strategy = strategy or experiment.make_strategy(config)
    seconds, entries = {}, {}
    for name, flag, spec, seed in to_train:
        start = time.time()
        _, _, trained = experiment.get_teacher(
            spec, name, flag, config, bundle, strategy, work, seed
        )
        seconds[name] = trained if trained is not None else time.time() - start
        entries[name] = {"arch": spec, "file": f"{name}.keras", "seconds": seconds[name]}
    work.commit({"teachers": entries, "settings": trained_with})
    return seconds
