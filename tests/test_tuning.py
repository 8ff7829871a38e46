"""bin/tune and tfkd.tuning: search spaces, one teacher for all trials, the validation-only
objective, the outputs (a flagfile bin/distill runs), resuming, and failures made loud."""
import csv
import dataclasses
import json
import os
import shutil
import sys

import keras
import keras_tuner
import numpy as np
import pytest
from cli_helpers import parse
from absl import flags

import tfkd.data
from tfkd import data, methods, models, teachers, training, tuning
from tfkd.cli import common, distill, tune

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = ["--dataset=synthetic", "--synthetic_size=500", "--synthetic_dim=12",
        "--synthetic_classes=4", "--synthetic_superclasses=2"]
TINY = DATA + ["--teacher=mlp", "--teacher_epochs=2", "--student=mlp_small", "--epochs=2",
               "--batch_size=64", "--optimizer=adam", "--verbose=0", "--export=keras"]
SPACE = {"temperature": [1, 2, 4, 8], "alpha": {"min": 0.1, "max": 0.9},
         "learning_rate": {"min": 0.001, "max": 0.03, "scale": "log"}}


def accuracy_of(model, split):
    x, y = split
    return float(np.mean(np.argmax(model.predict(data.to_float(x), verbose=0), -1) == y))


# ---- search spaces --------------------------------------------------------------------------

def test_search_space_declares_each_kind_of_hyperparameter():
    space = tuning.parse_search_space(
        {"temperature": [1, 2.5], "alpha": {"min": 0.1, "max": 0.9, "step": 0.2},
         "learning_rate": {"min": 1e-4, "max": 1e-2, "scale": "log"},
         "batch_size": {"min": 32, "max": 256, "scale": "log"},
         "optimizer": ["adam", "sgd"], "augment": [True, False]}, "kd")
    hp = keras_tuner.HyperParameters()
    values = {p.name: p.declare(hp) for p in space}
    assert values["temperature"] == 1.0 and isinstance(values["temperature"], float)
    assert hp._hps["temperature"][0].values == [1.0, 2.5]
    alpha = hp._hps["alpha"][0]
    assert (alpha.min_value, alpha.max_value, alpha.step, alpha.sampling) == (0.1, 0.9, 0.2,
                                                                              "linear")
    rate = hp._hps["learning_rate"][0]
    assert (rate.min_value, rate.max_value, rate.sampling) == (1e-4, 1e-2, "log")
    batch = hp._hps["batch_size"][0]
    assert isinstance(values["batch_size"], int) and batch.sampling == "log"
    assert hp._hps["optimizer"][0].values == ["adam", "sgd"]
    assert isinstance(values["augment"], bool)
    # Random draws stay inside the declared ranges, log-uniformly for a log scale.
    rng_values = [hp._hps["learning_rate"][0].random_sample(seed) for seed in range(400)]
    assert min(rng_values) >= 1e-4 and max(rng_values) <= 1e-2
    below_geometric_mean = np.mean(np.array(rng_values) < 1e-3)
    assert 0.4 < below_geometric_mean < 0.6


def test_every_committed_search_space_parses():
    folder = os.path.join(ROOT, "configs", "search")
    files = sorted(os.listdir(folder))
    assert "kd.json" in files
    for name in files:
        method = os.path.splitext(name)[0]
        if method in methods.METHODS:
            assert tuning.load_search_space(os.path.join(folder, name), method)


BROKEN_SPACES = {
    "unknown_name": ({"tmperature": [1, 2]}, ["'tmperature'", "temperature", "alpha",
                                              "learning_rate", "any method"]),
    "not_tunable": ({"epochs": [1, 2]}, ["'epochs'", "learning_rate"]),
    "wrong_type": ({"temperature": ["hot"]}, ["temperature", "'hot'", "number"]),
    "int_for_int_flag": ({"batch_size": [32.5]}, ["batch_size", "integer"]),
    "not_a_choice": ({"optimizer": ["rmsprop"]}, ["optimizer", "rmsprop", "sgd, adam, adamw"]),
    "range_of_strings": ({"optimizer": {"min": "a", "max": "b"}}, ["optimizer", "list"]),
    "min_above_max": ({"alpha": {"min": 0.9, "max": 0.1}}, ["alpha", "min must be < max"]),
    "log_of_zero": ({"learning_rate": {"min": 0, "max": 1, "scale": "log"}},
                    ["learning_rate", "log", "min > 0"]),
    "bad_scale": ({"alpha": {"min": 0, "max": 1, "scale": "exp"}}, ["alpha", "linear, log"]),
    "unknown_field": ({"alpha": {"min": 0, "max": 1, "stepz": 1}}, ["alpha", "stepz"]),
    "missing_max": ({"alpha": {"min": 0}}, ["alpha", "min and max"]),
    "empty_choices": ({"alpha": []}, ["alpha", "empty"]),
    "repeated_choice": ({"alpha": [0.5, 0.5]}, ["alpha", "repeat"]),
    "scalar": ({"alpha": 0.5}, ["alpha", "list of choices or a range"]),
    "empty": ({}, ["non-empty"]),
    "not_an_object": ([["alpha", 1]], ["JSON object"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN_SPACES))
def test_broken_search_space_gives_one_clear_error(case):
    spec, fragments = BROKEN_SPACES[case]
    with pytest.raises(ValueError) as error:
        tuning.parse_search_space(spec, "kd", source="--search_space x.json")
    message = str(error.value)
    assert message.startswith("--search_space x.json: ") and "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_option_of_another_method_is_named():
    other = methods.Method(methods.METHODS.get("kd").build,
                           (methods.Option("lambda2", 1.0, "test option"),))
    with methods.METHODS.temporary("other_method", other):
        with pytest.raises(ValueError, match="'lambda2' is an option of method .*other_method.*, "
                                             "not of --method=kd"):
            tuning.parse_search_space({"lambda2": [1.0, 2.0]}, "kd")
        assert tuning.parse_search_space({"lambda2": [1, 2]}, "other_method")[0].values == (1.0,
                                                                                          2.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny data set and an (untrained) teacher saved as .keras."""
    bundle = data.load(data.DataConfig("synthetic", synthetic_size=500, synthetic_dim=12,
                                       synthetic_classes=4, synthetic_superclasses=2))
    teacher = models.build("mlp", bundle.input_shape, bundle.num_classes, *bundle.stats(), seed=1)
    path = tmp_path_factory.mktemp("teacher") / "teacher.keras"
    teacher.save(path)
    return bundle, teacher, str(path)


def test_hypermodel_checks_training_values_and_drops_the_test_split(tiny):
    bundle, teacher, _ = tiny
    with pytest.raises(ValueError, match="learning_rate=-1.0: --learning_rate must be a number"):
        tuning.DistillerHyperModel("kd", "mlp_small", teacher, bundle,
                                   {"learning_rate": {"min": -1, "max": 1}})
    with pytest.raises(ValueError, match="validation_fraction"):
        tuning.DistillerHyperModel("kd", "mlp_small", teacher, dataclasses.replace(
            bundle, validation=(bundle.validation[0][:0], bundle.validation[1][:0])), SPACE)
    hypermodel = tuning.DistillerHyperModel("kd", "mlp_small", teacher, bundle, SPACE)
    assert len(hypermodel.bundle.test[1]) == 0 and len(bundle.test[1]) == 100
    assert hypermodel.bundle.train[0] is bundle.train[0]


def test_cli_broken_search_space_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "bad.json").write_text('{"temperature": [1, 2], "topk": [1, 2]}')
    monkeypatch.setattr(sys, "argv", ["tune", *TINY, f"--search_space={tmp_path / 'bad.json'}",
                                      f"--output_dir={tmp_path / 'out'}"])
    monkeypatch.delenv("TFKD_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        common.app_run(tune.main)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tune: error: --search_space "), lines
    assert "'topk'" in lines[0] and "temperature" in lines[0] and "alpha" in lines[0]
    assert not (tmp_path / "out").exists()


def test_flagfile_round_trips_every_distill_flag(tmp_path):
    parse(TINY + ["--augment", "--export=keras,tflite", "--learning_rate=0.00123456789",
                  "--search_space=x.json", "--output_dir=somewhere"])
    values = tune.distill_flag_values()
    assert "search_space" not in values and "output_dir" not in values and "tuner" not in values
    (tmp_path / "all.flags").write_text(tune.flagfile_text(values, comments=("a comment",)))
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["distill", f"--flagfile={tmp_path / 'all.flags'}"])
    assert tune.distill_flag_values() == values
    assert values["augment"] is True and values["export"] == ["keras", "tflite"]
    assert values["learning_rate"] == 0.00123456789 and values["data_dir"] is None


@pytest.mark.parametrize("extra, fragment", [
    (["--max_trials=0"], "--max_trials must be an integer >= 1"),
    (["--validation_fraction=0"], "--validation_fraction must be > 0"),
    (["--search_space="], "--search_space is required"),
    (["--search_space=missing.json"], "--search_space missing.json does not exist"),
])
def test_bad_tune_flags_are_named(tmp_path, extra, fragment):
    (tmp_path / "space.json").write_text(json.dumps(SPACE))
    parse(TINY + [f"--search_space={tmp_path / 'space.json'}", f"--output_dir={tmp_path / 'o'}",
                  *extra])
    with pytest.raises(ValueError, match=fragment):
        tune.run()
    assert not (tmp_path / "o").exists()


# ---- the search end to end ------------------------------------------------------------------

@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """One 2-trial random search through bin/tune's run(), with spies on teacher, data, eval."""
    root = tmp_path_factory.mktemp("search")
    space_file = root / "space.json"
    space_file.write_text(json.dumps(SPACE))
    out = root / "out"
    log = {"train_classifier": 0, "load_model": 0, "builds": [], "datasets": [], "accuracy": [],
           "phase": "before"}
    kd = methods.METHODS.get("kd")
    with pytest.MonkeyPatch.context() as patch:
        def spy(name, function, record):
            def wrapped(*args, **kwargs):
                record(*args, **kwargs)
                return function(*args, **kwargs)
            patch.setattr(*name, wrapped)

        def count(key):
            def record(*args, **kwargs):
                log[key] += 1
            return record

        original_load = data.load

        def load(config):
            log["bundle"] = bundle = original_load(config)
            return bundle

        patch.setattr(tfkd.data, "load", load)
        spy((common, "train_classifier"), common.train_classifier, count("train_classifier"))
        spy((teachers, "load_model"), teachers.load_model, count("load_model"))
        spy((tfkd.data, "as_dataset"), data.as_dataset,
            lambda x, y, *a, **k: log["datasets"].append((log["phase"], x)))
        spy((common, "accuracy"), common.accuracy,
            lambda model, split, **k: log["accuracy"].append((log["phase"], model, split[0])))

        def run_search(tuner, **kwargs):
            log["phase"] = "search"
            tuning_run_search(tuner, **kwargs)
            log["phase"] = "after"
            log["tuner"] = tuner
            return tuner

        tuning_run_search = tuning.run_search
        patch.setattr(tuning, "run_search", run_search)
        patch.setitem(methods.METHODS._entries, "kd", dataclasses.replace(
            kd, build=lambda student, teacher, bundle, options: (
                log["builds"].append((teacher, bundle)) or kd.build(student, teacher, bundle,
                                                                    options))))
        parse(TINY + [f"--search_space={space_file}", "--max_trials=2", f"--output_dir={out}"])
        log["results"] = tune.run()
        flags.FLAGS.unparse_flags()
    log["out"], log["space_file"] = out, space_file
    return log


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_search_writes_every_output(search):
    out = search["out"]
    for name in ("trials.csv", "trials.md", "trials.png", "best.flags", "results.json",
                 "search.json", "history.csv", "student.keras", "teacher.keras",
                 "tuner/tuner0.json", "tuner/trial_0/student.keras", "tuner/trial_1/history.csv"):
        assert (out / name).exists(), name
    rows = read_csv(out / "trials.csv")
    assert [row["status"] for row in rows] == ["COMPLETED", "COMPLETED"]
    assert float(rows[0]["val_accuracy"]) >= float(rows[1]["val_accuracy"])
    for row in rows:
        assert float(row["temperature"]) in (1, 2, 4, 8)
        assert 0.1 <= float(row["alpha"]) <= 0.9 and 0.001 <= float(row["learning_rate"]) <= 0.03
    markdown = (out / "trials.md").read_text().splitlines()
    assert markdown[2].startswith("| trial | status | temperature | alpha | learning_rate | "
                                  "val_accuracy |")
    assert len([line for line in markdown if line.startswith("| ")]) == 3
    results = json.loads((out / "results.json").read_text())
    assert results == json.loads(json.dumps(search["results"]))
    assert results["trials"] == {"COMPLETED": 2} and results["objective"] == "val_accuracy"
    assert results["best"]["trial"] == rows[0]["trial"]
    assert results["best"]["val_accuracy"] == pytest.approx(float(rows[0]["val_accuracy"]))
    best_history = (out / "tuner" / f"trial_{rows[0]['trial']}" / "history.csv").read_text()
    assert (out / "history.csv").read_text() == best_history


def test_teacher_is_trained_once_and_shared_by_every_trial(search):
    assert search["train_classifier"] == 1 and search["load_model"] == 0
    teachers_seen = {id(teacher) for teacher, _ in search["builds"]}
    # keras-tuner builds once to learn the space, then once per trial.
    assert len(search["builds"]) == 3 and len(teachers_seen) == 1
    assert all(len(bundle.test[1]) == 0 for _, bundle in search["builds"])


def test_objective_is_validation_accuracy_and_test_is_read_once_after(search):
    bundle, out = search["bundle"], search["out"]
    test_x = bundle.test[0]
    during = [x for phase, x in search["datasets"] if phase == "search"]
    assert len(during) == 4  # train and validation for each of the 2 trials
    assert not any(np.shares_memory(x, test_x) for x in during)
    assert sum(np.shares_memory(x, bundle.validation[0]) for x in during) == 2
    assert not any(phase == "search" for phase, _, _ in search["accuracy"])
    on_test = [(phase, model) for phase, model, x in search["accuracy"] if x is test_x]
    assert [phase for phase, _ in on_test] == ["after", "after"]  # the teacher, the best student
    # The score of each trial is the accuracy of its final student on the validation split.
    for row in read_csv(out / "trials.csv"):
        student = keras.saving.load_model(out / "tuner" / f"trial_{row['trial']}" /
                                          "student.keras")
        assert float(row["val_accuracy"]) == pytest.approx(accuracy_of(student, bundle.validation),
                                                           abs=1e-6)
    best = keras.saving.load_model(out / "student.keras")
    assert search["results"]["student"]["accuracy"] == pytest.approx(accuracy_of(best, bundle.test))


def test_best_flags_run_in_bin_distill_and_reproduce_the_best_trial(search, tmp_path):
    out = search["out"]
    text = (out / "best.flags").read_text()
    best = search["results"]["best"]["hyperparameters"]
    assert f"--learning_rate={best['learning_rate']!r}" in text.splitlines()
    assert f"--teacher={out / 'teacher.keras'}" in text.splitlines()
    flag_lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert not any(line.startswith(name) for line in flag_lines
                   for name in ("--tuner", "--max_trials", "--search_space", "--output_dir",
                                "--overwrite"))
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["distill", f"--flagfile={out / 'best.flags'}", f"--output_dir={tmp_path / 'd'}"])
    results = distill.run()
    for name, value in best.items():
        assert results["flags"][name] == value
    rows = read_csv(tmp_path / "d" / "history.csv")
    assert len(rows) == 2
    # Same teacher, data, seed and values: bin/distill retrains the best trial's student.
    assert float(rows[-1]["val_accuracy"]) == pytest.approx(
        search["results"]["best"]["val_accuracy"], abs=1e-6)


def test_search_resumes_without_redoing_trials_or_the_teacher(search, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(search["out"], out)
    args = TINY + [f"--search_space={search['space_file']}", f"--output_dir={out}"]
    fits = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(common, "train_classifier", lambda *a, **k: pytest.fail("retrained"))
        fit = tuning.DistillerHyperModel.fit
        patch.setattr(tuning.DistillerHyperModel, "fit",
                      lambda self, *a, **k: fits.append(1) or fit(self, *a, **k))
        parse(args + ["--max_trials=3"])
        results = tune.run()
    assert len(fits) == 1 and results["trials"] == {"COMPLETED": 3}
    assert len(read_csv(out / "trials.csv")) == 3
    parse(args + ["--student=mlp"])
    with pytest.raises(ValueError, match=r"--output_dir .* other settings \(--student 'mlp_small' "
                                         r"then, 'mlp' now\).*--overwrite"):
        tune.run()


# ---- failures -------------------------------------------------------------------------------

def test_missing_module_stops_the_search_with_one_error(search, tmp_path, monkeypatch):
    """The reported failure: no tensorboard made every trial fail while search() returned."""
    monkeypatch.setitem(sys.modules, "tensorboard.plugins.hparams", None)
    fits = []
    fit = tuning.DistillerHyperModel.fit
    monkeypatch.setattr(tuning.DistillerHyperModel, "fit",
                        lambda self, *a, **k: fits.append(1) or fit(self, *a, **k))
    parse(TINY + [f"--search_space={search['space_file']}", "--max_trials=3",
                  f"--teacher={search['out'] / 'teacher.keras'}",
                  f"--output_dir={tmp_path / 'out'}"])
    with pytest.raises(ValueError) as error:
        tune.run()
    message = str(error.value)
    assert isinstance(error.value, tuning.SearchError) and "\n" not in message
    assert message.startswith("trial 0 (temperature=") and "ModuleNotFoundError" in message
    assert "tensorboard.plugins.hparams" in message and "set-up" in message
    assert not fits  # stopped at the first trial
    assert not (tmp_path / "out" / "trials.csv").exists()


class FlakyHyperModel(tuning.DistillerHyperModel):
    """Fails the trials whose number (from 0) is in `failing`, before training."""

    def __init__(self, *args, failing=(), error=RuntimeError, **kwargs):
        super().__init__(*args, **kwargs)
        self.failing, self.error, self.calls = set(failing), error, 0

    def fit(self, hp, model, *args, **kwargs):
        self.calls += 1
        if self.calls - 1 in self.failing:
            raise self.error(f"trial number {self.calls - 1} diverged")
        return super().fit(hp, model, *args, **kwargs)


def flaky_tuner(tiny, directory, max_trials, **kwargs):
    bundle, teacher, _ = tiny
    config = training.TrainConfig(epochs=1, batch_size=128, optimizer="adam")
    hypermodel = FlakyHyperModel("kd", "mlp_small", teacher, bundle, SPACE, train_config=config,
                                 **kwargs)
    return tuning.make_tuner("random", hypermodel, str(directory), max_trials=max_trials)


def test_a_trial_failing_for_its_values_is_recorded_and_three_in_a_row_stop(tiny, tmp_path):
    tuner = flaky_tuner(tiny, tmp_path, 8, failing={1, 3, 4, 5})
    with pytest.raises(tuning.SearchError, match=r"^trial 5 \(temperature=.*RuntimeError: trial "
                                                 r"number 5 diverged; 3 trials failed in a row"):
        tuning.run_search(tuner, verbose=0)
    assert tuner.hypermodel.calls == 6
    rows = tuning.trials_table(tuner)
    statuses = {row["trial"]: row["status"] for row in rows}
    # Trial 1 failed for its values and the search went on; 5 is left running, to be retried
    # when the search resumes.
    assert statuses == {"0": "COMPLETED", "1": "FAILED", "2": "COMPLETED", "3": "FAILED",
                        "4": "FAILED", "5": "RUNNING"}
    failed = [row for row in rows if row["trial"] == "1"][0]
    assert failed.get("val_accuracy") is None
    assert failed["error"].endswith("RuntimeError: trial number 1 diverged")
    assert [row["status"] for row in rows[:2]] == ["COMPLETED", "COMPLETED"]


@pytest.mark.parametrize("error, expected", [
    (RuntimeError, "trial 0 .* no trial has completed"),
    (AttributeError, "trial 0 .*AttributeError.* set-up"),
])
def test_a_first_trial_failure_stops_the_search(tiny, tmp_path, error, expected):
    tuner = flaky_tuner(tiny, tmp_path, 5, failing={0, 1}, error=error)
    with pytest.raises(tuning.SearchError, match=expected):
        tuning.run_search(tuner, verbose=0)
    assert tuner.hypermodel.calls == 1


@pytest.mark.parametrize("kind", ["hyperband", "bayesian"])
def test_other_tuners_run(tiny, tmp_path, kind):
    bundle, teacher, _ = tiny
    # Hyperband's budget is --epochs: it needs 2 to have something to choose.
    config = training.TrainConfig(epochs=2 if kind == "hyperband" else 1, batch_size=128,
                                  optimizer="adam")
    hypermodel = tuning.DistillerHyperModel("kd", "mlp_small", teacher, bundle, SPACE,
                                            train_config=config)
    tuner = tuning.make_tuner(kind, hypermodel, str(tmp_path), max_trials=2)
    tuning.run_search(tuner, verbose=0)
    rows = tuning.trials_table(tuner)
    assert len(rows) == 2 and {row["status"] for row in rows} == {"COMPLETED"}
    best = tuning.best_trial(tuner)
    student = tuning.load_student(tuner, best)
    assert best.score == pytest.approx(accuracy_of(student, bundle.validation), abs=1e-6)
    if kind == "hyperband":
        assert {row["epochs"] for row in rows} <= {1, 2}
