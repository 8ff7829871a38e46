"""`bin/tune`: keras-tuner search over distillation hyperparameters.

Takes every `bin/distill` flag plus --tuner, --max_trials and --search_space. The teacher is
trained or loaded once; each trial distills a fresh student and is scored by its validation
accuracy; the test split is read once, for the best trial. Writes to --output_dir:

  trials.csv, trials.md  every trial, best first; trials.png, accuracy against each value
  best.flags             every bin/distill flag with the best values: bin/distill --flagfile=
  results.json           best trial, its test accuracy, the teacher's, the flags
  tuner/                 keras-tuner's state: re-running the same command resumes the search
  student.keras, ...     the best trial's student, exported as by bin/distill (--export)
"""
import csv
import io
import json
import os
import shutil
import time

import keras
from absl import flags

from tfkd import data, export, methods, models, teachers, training, tuning
from tfkd.cli import common, distill  # distill defines every bin/distill flag
from tfkd.cli import flags as tfkd_flags
from tfkd.io import write_text

FLAGS = flags.FLAGS

flags.DEFINE_enum("tuner", "random", tuning.TUNERS,
                  "keras-tuner algorithm: random search, Hyperband (up to --epochs per trial) "
                  "or Bayesian optimisation.")
flags.DEFINE_integer("max_trials", 10,
                     "Trials in all; re-running with a larger value resumes and adds trials.")
flags.DEFINE_string("search_space", None,
                    "JSON file: flag name -> list of choices or {\"min\", \"max\", \"scale\": "
                    "\"linear\" or \"log\"} (see configs/search/).")

OWN_FLAGS = ("tuner", "max_trials", "search_space")
# Flags that do not change what a trial computes: a search resumes under other values of them.
RUN_FLAGS = ("max_trials", "verbose", "export", "baseline", "output_dir", "overwrite")
SEARCH_FILE = "search.json"
TUNER_FOLDER = "tuner"


def distill_flag_values():
    """Every bin/distill flag and its value (the flags of this tool and the output left out)."""
    return {name: value for name, value in tfkd_flags.flag_values().items()
            if name not in OWN_FLAGS + ("output_dir", "overwrite")}


def search_settings(search_space_spec):
    """What the trials depend on; a search resumes only when these are unchanged."""
    settings = {name: value for name, value in tfkd_flags.flag_values().items()
                if name not in RUN_FLAGS and name != "search_space"}
    settings["search_space"] = search_space_spec
    return json.loads(json.dumps(settings))


def prepare_output_dir(output_dir, settings):
    """Creates or resumes `output_dir`; returns True when resuming an earlier search."""
    search_file = os.path.join(output_dir, SEARCH_FILE)
    if FLAGS.overwrite and os.path.isdir(output_dir):
        shutil.rmtree(output_dir)
    elif os.path.isfile(search_file):
        with open(search_file) as handle:
            previous = json.load(handle)
        changed = [f"--{name} {previous.get(name)!r} then, {settings.get(name)!r} now"
                   for name in sorted(set(previous) | set(settings))
                   if previous.get(name) != settings.get(name)]
        if changed:
            raise ValueError(f"--output_dir {output_dir} holds a search with other settings "
                             f"({'; '.join(changed)}): pass the same flags to resume it, or "
                             "--overwrite to start again")
        return True
    common.check_output_dir(output_dir, overwrite=False)
    os.makedirs(output_dir, exist_ok=True)
    write_text(search_file, json.dumps(settings, indent=2) + "\n")
    return False


def get_teacher(bundle, strategy, output_dir, resuming, seconds):
    """The teacher for the whole search, trained or loaded once.

    Returns (model, path, input scale): the path and scale `bin/distill --teacher=` needs to
    load this very teacher. A resumed search reloads the teacher it trained, so every trial
    sees the same one.
    """
    saved = os.path.abspath(os.path.join(output_dir, "teacher.keras"))
    if resuming and FLAGS.teacher in models.MODELS and os.path.isfile(saved):
        print(f"Resuming the search: loading its teacher {saved}", flush=True)
        with strategy.scope():
            return teachers.load_model(saved), saved, 1.0
    teacher_config = tfkd_flags.train_config(epochs=FLAGS.teacher_epochs)
    teacher, spec, trained = distill.get_teacher(bundle, strategy, teacher_config, output_dir,
                                                 seconds)
    if trained:
        return teacher, saved, 1.0
    return teacher, os.path.abspath(spec), FLAGS.teacher_input_scale


def flagfile_text(values, comments=()):
    """absl flagfile lines: `--name=value`, `--name`/`--noname` for booleans, comma lists."""
    lines = [f"# {comment}" for comment in comments]
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            lines.append(f"--{name}" if value else f"--no{name}")
        elif isinstance(value, (list, tuple)):
            lines.append(f"--{name}={','.join(map(str, value))}")
        elif isinstance(value, float):
            lines.append(f"--{name}={value!r}")
        else:
            lines.append(f"--{name}={value}")
    return "\n".join(lines) + "\n"


def table_columns(rows):
    columns = []
    for row in rows:
        columns += [name for name in row if name not in columns]
    return columns


def csv_text(rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=table_columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def markdown_text(rows, title):
    columns = table_columns(rows)

    def cell(value):
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value).replace("|", "\\|")

    lines = [f"# {title}", "", "| " + " | ".join(columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(name)) for name in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def default_output_dir():
    return os.path.join("savedmodels", "tune-" + os.path.basename(distill.default_output_dir()))


def check_flags():
    distill.check_flags()
    if FLAGS.max_trials < 1:
        raise ValueError(f"--max_trials must be an integer >= 1, got {FLAGS.max_trials}")
    if FLAGS.validation_fraction <= 0:
        raise ValueError("--validation_fraction must be > 0: the search maximises the "
                         "validation accuracy and never looks at the test split")


def plot_trials(rows, space, path):
    """trials.png: the validation accuracy of every completed trial against each searched value."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    done = [row for row in rows if row.get(tuning.OBJECTIVE) is not None]
    figure, axes = plt.subplots(1, len(space), figsize=(3.2 * len(space), 3.0), sharey=True,
                                squeeze=False)
    scores = [row[tuning.OBJECTIVE] for row in done]
    for axis, parameter in zip(axes[0], space):
        values = [row[parameter.name] for row in done]
        if parameter.kind in ("bool", "string"):  # categories on evenly spaced positions
            labels = [str(value) for value in (parameter.values or sorted(set(values), key=str))]
            positions = [labels.index(str(value)) for value in values]
            axis.set_xticks(range(len(labels)), labels)
            values = positions
        elif parameter.scale == "log":
            axis.set_xscale("log")
            axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.scatter(values, scores, s=18)
        if done:
            axis.scatter(values[0], scores[0], s=60, facecolors="none", edgecolors="red",
                         label="best")
        axis.set_xlabel(parameter.name)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation accuracy")
    if done:
        axes[0][0].legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_tables(output_dir, rows, space):
    write_text(os.path.join(output_dir, "trials.csv"), csv_text(rows))
    title = (f"{FLAGS.method} {FLAGS.student} on {FLAGS.dataset}: {len(rows)} trials of "
             f"--tuner={FLAGS.tuner}, best first, by the student's validation accuracy")
    write_text(os.path.join(output_dir, "trials.md"), markdown_text(rows, title))
    plot_trials(rows, space, os.path.join(output_dir, "trials.png"))


def write_best_flags(output_dir, best, best_values, trial_count, teacher_path, teacher_scale):
    """best.flags: every bin/distill flag as run here, with the best values and this teacher."""
    values = {**distill_flag_values(), **best_values}
    if teacher_path is not None:
        values.update(teacher=teacher_path, teacher_input_scale=teacher_scale)
    searched = ", ".join(f"{name}={value}" for name, value in best_values.items())
    write_text(os.path.join(output_dir, "best.flags"), flagfile_text(values, comments=(
        f"bin/tune --tuner={FLAGS.tuner} --search_space={FLAGS.search_space}: best of "
        f"{trial_count} trials, trial {best.trial_id} ({TUNER_FOLDER}/trial_{best.trial_id}), "
        f"validation accuracy {best.score:.4f}",
        f"searched: {searched}",
        "reproduce: bin/distill --flagfile=best.flags --output_dir=DIR")))
    return searched


def run():
    """Runs the search from parsed flags; returns the results dictionary."""
    check_flags()
    space = tuning.load_search_space(FLAGS.search_space, FLAGS.method)
    with open(FLAGS.search_space) as handle:
        settings = search_settings(json.load(handle))
    data_config, train_config = tfkd_flags.data_config(), tfkd_flags.train_config()
    output_dir = FLAGS.output_dir or default_output_dir()
    strategy = training.make_strategy(FLAGS.strategy)
    resuming = prepare_output_dir(output_dir, settings)
    bundle = data.load(data_config)
    common.seed_everything(FLAGS.seed)
    seconds = {}
    teacher, teacher_path, teacher_scale = None, None, None
    if methods.METHODS.get(FLAGS.method).needs_teacher:
        teacher, teacher_path, teacher_scale = get_teacher(bundle, strategy, output_dir, resuming,
                                                           seconds)
    hypermodel = tuning.DistillerHyperModel(
        FLAGS.method, FLAGS.student, teacher, bundle, space, train_config=train_config,
        options=tfkd_flags.method_options(FLAGS.method), strategy=strategy,
        augment=FLAGS.augment, seed=FLAGS.seed, verbose=FLAGS.verbose)
    tuner = tuning.make_tuner(FLAGS.tuner, hypermodel, output_dir, FLAGS.max_trials,
                              seed=FLAGS.seed, project_name=TUNER_FOLDER)
    start = time.time()
    tuning.run_search(tuner, verbose=FLAGS.verbose, callbacks=[
        keras.callbacks.TensorBoard(os.path.join(output_dir, "logs", "trials"))])
    seconds["search"] = time.time() - start

    rows = tuning.trials_table(tuner)
    write_tables(output_dir, rows, hypermodel.space)
    best = tuning.best_trial(tuner)
    best_values = hypermodel.values(best.hyperparameters)
    searched = write_best_flags(output_dir, best, best_values, len(rows), teacher_path,
                                teacher_scale)
    shutil.copyfile(os.path.join(tuner.get_trial_dir(best.trial_id), "history.csv"),
                    os.path.join(output_dir, "history.csv"))

    # The test split, read once: the best trial's student (and the teacher, for reference).
    student = tuning.load_student(tuner, best)
    results = {"dataset": FLAGS.dataset, "method": FLAGS.method, "tuner": FLAGS.tuner,
               "objective": tuning.OBJECTIVE,
               "trials": {status: sum(row["status"] == status for row in rows)
                          for status in sorted({row["status"] for row in rows})},
               "best": {"trial": best.trial_id, "val_accuracy": float(best.score),
                        "hyperparameters": best_values}}
    if teacher is not None:
        results["teacher"] = {"arch": FLAGS.teacher, "path": teacher_path,
                              "accuracy": common.accuracy(teacher, bundle.test),
                              "params": int(teacher.count_params())}
    results["student"] = {"arch": FLAGS.student, "accuracy": common.accuracy(student, bundle.test),
                          "params": int(student.count_params())}
    if FLAGS.baseline:
        start = time.time()
        best_config, _, augment = hypermodel.configs(best.hyperparameters)
        alone = common.train_classifier(FLAGS.student, bundle, strategy, best_config, "baseline",
                                        FLAGS.verbose, augment, FLAGS.seed)
        seconds["baseline"] = time.time() - start
        results["baseline"] = {"accuracy": common.accuracy(alone, bundle.test)}
    # A resumed search re-exports its (possibly new) best student over the previous one.
    results["exports"] = export.export_student(
        student, output_dir, FLAGS.export, test_data=bundle.test, verbose=FLAGS.verbose > 0,
        train_images=bundle.train[0], overwrite=True)
    results["flags"] = tfkd_flags.flag_values()
    results["seconds"] = seconds
    write_text(os.path.join(output_dir, "results.json"), json.dumps(results, indent=2) + "\n")
    common.print_summary(results, output_dir)
    print(f"  best     trial {best.trial_id} ({TUNER_FOLDER}/trial_{best.trial_id}) of "
          f"{len(rows)}, validation accuracy {best.score:.4f}: {searched}")
    print(f"  search   {output_dir}: trials.csv, trials.md, trials.png, best.flags, "
          f"{TUNER_FOLDER}/")
    return results


def main(argv):
    common.no_positional_arguments(argv)
    run()


def entry():
    common.app_run(main)
