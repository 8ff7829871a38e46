"""bin/tune and tfkd.tuning: search spaces, trials that are `tfkd.experiment.run`, teachers
trained once, the validation-only objective, a best.flags that bin/distill reproduces exactly,
resuming, and failures made loud."""

import csv
import dataclasses
import json
import os
import shutil

import keras
import keras_tuner
import numpy as np
import pytest

import tfkd.data
from tfkd import data, experiment, methods, tuning
from tfkd.cli import common, distill, tune
from tfkd.experiment import distillation, fitting

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = [
    "--dataset=synthetic",
    "--synthetic_size=600",
    "--synthetic_dim=12",
    "--synthetic_classes=4",
    "--synthetic_superclasses=2",
]
TINY = DATA + [
    "--teacher=mlp",
    "--teacher_epochs=2",
    "--student=mlp_small",
    "--epochs=2",
    "--batch_size=64",
    "--optimizer=adam",
    "--learning_rate=0.01",
    "--verbose=0",
    "--export=keras",
]
SPACE = {
    "temperature": [1, 2, 4, 8],
    "alpha": {"min": 0.1, "max": 0.9},
    "learning_rate": {"min": 0.003, "max": 0.03, "scale": "log"},
}


def accuracy_of(model, split):
    x, y = split
    return float(np.mean(np.argmax(model.predict(data.to_float(x), verbose=0), -1) == y))


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def read_json(path):
    with open(path) as handle:
        return json.load(handle)


def run_tune(*args):
    return tune.main(["bin/tune", *args])


# ---- search spaces --------------------------------------------------------------------------


def test_search_space_declares_each_kind_of_hyperparameter():
    space = tuning.parse_search_space(
        {
            "temperature": [1, 2.5],
            "alpha": {"min": 0.1, "max": 0.9, "step": 0.2},
            "learning_rate": {"min": 1e-4, "max": 1e-2, "scale": "log"},
            "batch_size": {"min": 32, "max": 256, "scale": "log"},
            "optimizer": ["adam", "sgd"],
            "augment": [True, False],
        },
        "kd",
    )
    hp = keras_tuner.HyperParameters()
    values = {p.name: p.declare(hp) for p in space}
    assert values["temperature"] == 1.0 and isinstance(values["temperature"], float)
    assert hp._hps["temperature"][0].values == [1.0, 2.5]
    alpha = hp._hps["alpha"][0]
    assert (alpha.min_value, alpha.max_value, alpha.step, alpha.sampling) == (
        0.1,
        0.9,
        0.2,
        "linear",
    )
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
        assert method in methods.METHODS, name
        assert tuning.load_search_space(os.path.join(folder, name), method)


def test_default_search_space_without_a_file():
    # A method with a committed file gets it; others the options' `search` entries.
    spec, source = tuning.read_search_space(None, "kd")
    assert source.endswith(os.path.join("configs", "search", "kd.json"))
    assert spec == read_json(os.path.join(ROOT, "configs", "search", "kd.json"))
    spec, source = tuning.read_search_space("", "aver")
    assert "default search space of --method=aver" in source
    assert spec == {
        "temperature": [1.0, 2.0, 4.0, 8.0],
        "learning_rate": {"min": 1e-3, "max": 0.1, "scale": "log"},
    }
    assert tuning.read_search_space(None, "kd_pt")[0] == {
        "temperature": [1.0, 2.0, 4.0, 8.0],
        "alpha": {"min": 0.1, "max": 0.99},
        "learning_rate": {"min": 1e-3, "max": 0.1, "scale": "log"},
    }
    assert tuning.read_search_space(None, "ls")[0] == {
        "learning_rate": {"min": 1e-3, "max": 0.1, "scale": "log"}
    }
    for method in methods.METHODS.names():  # every default parses for its method
        assert tuning.load_search_space(None, method)


BROKEN_SPACES = {
    "unknown_name": (
        {"tmperature": [1, 2]},
        ["'tmperature'", "temperature", "alpha", "learning_rate", "any method"],
    ),
    "not_tunable": ({"epochs": [1, 2]}, ["'epochs'", "learning_rate"]),
    "wrong_type": ({"temperature": ["hot"]}, ["temperature", "'hot'", "number"]),
    "int_for_int_flag": ({"batch_size": [32.5]}, ["batch_size", "integer"]),
    "not_a_choice": ({"optimizer": ["rmsprop"]}, ["optimizer", "rmsprop", "sgd, adam, adamw"]),
    "range_of_strings": ({"optimizer": {"min": "a", "max": "b"}}, ["optimizer", "list"]),
    "min_above_max": ({"alpha": {"min": 0.9, "max": 0.1}}, ["alpha", "min must be < max"]),
    "log_of_zero": (
        {"learning_rate": {"min": 0, "max": 1, "scale": "log"}},
        ["learning_rate", "log", "min > 0"],
    ),
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
    with pytest.raises(ValueError, match=r"^--search_space x\.json: ") as error:
        tuning.parse_search_space(spec, "kd", source="--search_space x.json")
    message = str(error.value)
    assert message.startswith("--search_space x.json: ") and "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_option_of_another_method_is_named():
    other = methods.Method(
        methods.METHODS.get("kd").build, (methods.Option("lambda2", 1.0, "test option"),)
    )
    with methods.METHODS.temporary("other_method", other):
        with pytest.raises(
            ValueError,
            match="'lambda2' is an option of method .*other_method.*, not of --method=kd",
        ):
            tuning.parse_search_space({"lambda2": [1.0, 2.0]}, "kd")
        assert tuning.parse_search_space({"lambda2": [1, 2]}, "other_method")[0].values == (
            1.0,
            2.0,
        )


def test_cli_broken_search_space_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "bad.json").write_text('{"temperature": [1, 2], "topk": [1, 2]}')
    monkeypatch.delenv("TFKD_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        common.run_tool(
            tune.main,
            [
                "tune",
                *TINY,
                f"--search_space={tmp_path / 'bad.json'}",
                f"--output_dir={tmp_path / 'out'}",
            ],
        )
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tune: error: --search_space "), lines
    assert "'topk'" in lines[0] and "temperature" in lines[0] and "alpha" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--max_trials=0"], "--max_trials must be an integer >= 1"),
        (["--validation_fraction=0"], "--validation_fraction must be > 0"),
        (["--search_space=missing.json"], "--search_space missing.json does not exist"),
        (["--tuner=hyperband", "--epochs=1"], "--tuner=hyperband needs --epochs >= 2"),
        (["--method=aver", "--search_space="], "--teachers: method .aver. needs"),
        (["--teacher=cnn_small"], "model 'cnn_small' must have rank 3"),
        (["--temperature=-1"], "--temperature must be > 0"),
    ],
)
def test_bad_tune_flags_are_named(tmp_path, extra, fragment):
    (tmp_path / "space.json").write_text(json.dumps(SPACE))
    space = (
        []
        if any(a.startswith("--search_space") for a in extra)
        else [f"--search_space={tmp_path / 'space.json'}"]
    )
    with pytest.raises(ValueError, match=fragment):
        run_tune(*TINY, *space, f"--output_dir={tmp_path / 'o'}", *extra)
    assert not (tmp_path / "o").exists()


def test_training_values_of_the_space_are_checked_first(tmp_path):
    config = experiment.RunConfig.from_flags(TINY)
    with pytest.raises(ValueError, match="learning_rate=-1.0: --learning_rate must be a number"):
        tuning.DistillerHyperModel(config, {"learning_rate": {"min": -1, "max": 1}})


# ---- the search end to end ------------------------------------------------------------------


class Untouchable:
    """Stands in for the test split during a search: its length is known, reading it is
    recorded and fails."""

    def __init__(self, array, reads):
        self.length, self.reads = len(array), reads

    def __len__(self):
        return self.length

    def _read(self, *args, **kwargs):
        self.reads.append(True)
        raise AssertionError("a trial read the test split")

    __array__ = __getitem__ = __iter__ = _read


@pytest.fixture(scope="module")
def spied():
    """Runs `search(args)` under spies: teacher trainings, runs, the test split poisoned while
    keras-tuner searches."""

    def search(args):
        log = {
            "train_classifier": 0,
            "runs": [],
            "test_reads": [],
            "phase": "before",
            "poisoned": 0,
        }
        with pytest.MonkeyPatch.context() as patch:
            original_load, original_train = data.load, fitting.train_classifier
            original_run, original_search = experiment.run, tuning.search.run_search

            def load(config):
                bundle = original_load(config)
                if log["phase"] != "search":
                    return bundle
                x, y = bundle.test
                log["poisoned"] += 1
                return dataclasses.replace(
                    bundle,
                    test=(Untouchable(x, log["test_reads"]), Untouchable(y, log["test_reads"])),
                )

            def train_classifier(*args, **kwargs):
                log["train_classifier"] += 1
                return original_train(*args, **kwargs)

            def run(config):
                results = original_run(config)
                log["runs"].append((config, results))
                return results

            def run_search(tuner, **kwargs):
                log["phase"] = "search"
                original_search(tuner, **kwargs)
                log["phase"] = "after"
                log["tuner"] = tuner
                return tuner

            patch.setattr(tfkd.data, "load", load)
            patch.setattr(fitting, "train_classifier", train_classifier)
            patch.setattr(experiment, "run", run)
            patch.setattr(tuning.search, "run_search", run_search)
            log["results"] = run_tune(*args)
        return log

    return search


@pytest.fixture(scope="module")
def search(spied, tmp_path_factory):
    """A 2-trial deterministic random search of kd with a teacher-scored curriculum."""
    root = tmp_path_factory.mktemp("search")
    space_file = root / "space.json"
    space_file.write_text(json.dumps(SPACE))
    out = root / "out"
    log = spied(
        TINY
        + [
            f"--search_space={space_file}",
            "--max_trials=2",
            "--deterministic",
            "--curriculum=teacher",
            f"--output_dir={out}",
        ]
    )
    log["out"], log["space_file"] = out, space_file
    return log


def test_search_writes_every_output(search):
    out = search["out"]
    for name in (
        "trials.csv",
        "trials.md",
        "trials.png",
        "best.flags",
        "results.json",
        "search.json",
        "history.csv",
        "student.keras",
        "teachers/teacher.keras",
        "tuner/oracle.json",
        "tuner/trial_0/run/student.keras",
        "tuner/trial_1/run/history.csv",
        "tuner/trial_1/run/curriculum.npz",
    ):
        assert (out / name).exists(), name
    rows = read_csv(out / "trials.csv")
    assert [row["status"] for row in rows] == ["COMPLETED", "COMPLETED"]
    assert float(rows[0]["val_accuracy"]) >= float(rows[1]["val_accuracy"])
    for row in rows:
        assert float(row["temperature"]) in (1, 2, 4, 8)
        assert 0.1 <= float(row["alpha"]) <= 0.9 and 0.003 <= float(row["learning_rate"]) <= 0.03
    markdown = (out / "trials.md").read_text().splitlines()
    assert markdown[2].startswith(
        "| trial | status | temperature | alpha | learning_rate | val_accuracy |"
    )
    assert len([line for line in markdown if line.startswith("| ")]) == 3
    results = read_json(out / "results.json")
    assert results == json.loads(json.dumps(search["results"]))
    assert results["trials"] == {"COMPLETED": 2} and results["objective"] == "val_accuracy"
    assert results["best"]["trial"] == rows[0]["trial"]
    assert results["best"]["val_accuracy"] == float(rows[0]["val_accuracy"])
    assert results["teacher"]["arch"] == "mlp"
    assert results["teacher"]["path"] == str(out / "teachers" / "teacher.keras")
    best_history = out / "tuner" / f"trial_{rows[0]['trial']}" / "run" / "history.csv"
    assert (out / "history.csv").read_text() == best_history.read_text()


def test_every_trial_is_a_run_of_the_derived_config(search):
    out = search["out"]
    runs = search["runs"]
    assert len(runs) == 2
    for (config, results), row in zip(
        runs, sorted(read_csv(out / "trials.csv"), key=lambda row: row["trial"])
    ):
        assert config.output.dir == str(out / "tuner" / f"trial_{row['trial']}" / "run")
        assert (
            config.output.evaluate_test,
            config.output.export,
            config.output.baseline,
            config.output.overwrite,
        ) == (False, ("keras",), False, False)
        assert config.curriculum.order == "teacher" and config.deterministic
        assert config.schedule.learning_rate == float(row["learning_rate"])
        assert config.method.options == {
            "temperature": float(row["temperature"]),
            "alpha": float(row["alpha"]),
        }
        assert config.schedule.epochs == 2 and config.student == "mlp_small"


def test_teacher_is_trained_once_and_shared_by_every_trial(search):
    out = search["out"]
    assert search["train_classifier"] == 1
    for config, results in search["runs"]:
        assert config.teacher.spec == str(out / "teachers" / "teacher.keras")
        assert config.teacher.input_scale == 1.0
        assert set(results["seconds"]) == {"distill"}  # no teacher trained by a trial


def test_objective_is_the_final_val_accuracy_and_no_trial_reads_the_test_split(search):
    out = search["out"]
    # Every trial ran on a poisoned test split and never read it.
    assert search["poisoned"] == 2 and search["test_reads"] == []
    reads = []
    with pytest.raises(AssertionError):
        data.to_float(Untouchable(np.zeros(3), reads))
    assert reads == [True]
    bundle = data.load(
        data.DataConfig(
            "synthetic",
            synthetic_size=600,
            synthetic_dim=12,
            synthetic_classes=4,
            synthetic_superclasses=2,
        )
    )
    by_dir = {config.output.dir: results for config, results in search["runs"]}
    for row in read_csv(out / "trials.csv"):
        folder = out / "tuner" / f"trial_{row['trial']}" / "run"
        results = by_dir[str(folder)]
        assert read_json(folder / "results.json") == json.loads(json.dumps(results))
        assert "accuracy" not in results["student"] and "accuracy" not in results["teacher"]
        assert "report" not in results["exports"]
        student = keras.saving.load_model(folder / "student.keras")
        assert (
            float(row["val_accuracy"])
            == results["student"]["val_accuracy"]
            == accuracy_of(student, bundle.validation)
        )
    best = keras.saving.load_model(out / "student.keras")
    assert search["results"]["student"]["accuracy"] == accuracy_of(best, bundle.test)


def test_best_flags_reproduce_the_best_trial_exactly(search, tmp_path):
    out = search["out"]
    text = (out / "best.flags").read_text()
    best = search["results"]["best"]
    lines = text.splitlines()
    assert f"--learning_rate={best['hyperparameters']['learning_rate']!r}" in lines
    assert f"--teacher={out / 'teachers' / 'teacher.keras'}" in lines
    assert "--curriculum=teacher" in lines and "--deterministic" in lines
    assert not any(
        line.startswith(name)
        for line in lines
        for name in ("--tuner", "--max_trials", "--search_space", "--output_dir")
    )
    results = distill.main(
        ["bin/distill", f"--flagfile={out / 'best.flags'}", f"--output_dir={tmp_path / 'd'}"]
    )
    assert results["student"]["val_accuracy"] == best["val_accuracy"]
    trial = keras.saving.load_model(out / best["run"] / "student.keras")
    again = keras.saving.load_model(tmp_path / "d" / "student.keras")
    for a, b in zip(trial.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_search_resumes_without_redoing_trials_or_the_teacher(search, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(search["out"], out)
    args = TINY + [
        f"--search_space={search['space_file']}",
        "--deterministic",
        "--curriculum=teacher",
        f"--output_dir={out}",
    ]
    runs = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fitting, "train_classifier", lambda *a, **k: pytest.fail("retrained"))
        run = experiment.run
        patch.setattr(experiment, "run", lambda config: runs.append(config) or run(config))
        results = run_tune(*args, "--max_trials=3")
    assert len(runs) == 1 and results["trials"] == {"COMPLETED": 3}
    assert runs[0].teacher.spec == str(out / "teachers" / "teacher.keras")
    assert len(read_csv(out / "trials.csv")) == 3
    with pytest.raises(
        ValueError,
        match=r"--output_dir .* holds a search with other flags \(--student was 'mlp_small', "
        r"now 'mlp'\).*--overwrite",
    ):
        run_tune(*args, "--student=mlp")


def test_multi_teacher_search_on_the_default_space(spied, tmp_path):
    out = tmp_path / "out"
    log = spied(
        TINY
        + [
            "--method=aver",
            "--teachers=mlp,mlp_small",
            "--max_trials=2",
            "--deterministic",
            f"--output_dir={out}",
        ]
    )
    results = log["results"]
    assert "default search space of --method=aver" in results["flags"]["search_space_source"]
    assert set(results["best"]["hyperparameters"]) == {"temperature", "learning_rate"}
    assert log["train_classifier"] == 2 and log["test_reads"] == []
    specs = (str(out / "teachers" / "teacher_0.keras"), str(out / "teachers" / "teacher_1.keras"))
    for config, trial_results in log["runs"]:
        assert config.teacher.specs == specs and set(trial_results["seconds"]) == {"distill"}
    assert [entry["arch"] for entry in results["teachers"]] == ["mlp", "mlp_small"]
    reproduced = distill.main(
        ["bin/distill", f"--flagfile={out / 'best.flags'}", f"--output_dir={tmp_path / 'd'}"]
    )
    assert reproduced["method"] == "aver"
    assert reproduced["student"]["val_accuracy"] == results["best"]["val_accuracy"]


@pytest.mark.filterwarnings("ignore:fit_temperature")  # an untrained teacher: T* at its bound
def test_calibrated_search_with_a_baseline_reproduces_and_reruns_as_a_no_op(teacher_file, tmp_path):
    out = tmp_path / "out"
    (tmp_path / "space.json").write_text(json.dumps(SPACE))
    args = TINY + [
        f"--teacher={teacher_file}",
        f"--search_space={tmp_path / 'space.json'}",
        "--max_trials=1",
        "--calibrate_teacher",
        "--calibration_mode=scale",
        "--baseline",
        "--deterministic",
        f"--output_dir={out}",
    ]
    results = run_tune(*args)
    trial = read_json(out / results["best"]["run"] / "results.json")
    assert "calibration" in trial and set(results["baseline"]) == {"accuracy", "val_accuracy"}
    assert (out / "baseline" / "results.json").is_file()
    reproduced = distill.main(
        ["bin/distill", f"--flagfile={out / 'best.flags'}", f"--output_dir={tmp_path / 'd'}"]
    )
    assert reproduced["calibration"]["temperature"] == trial["calibration"]["temperature"]
    assert reproduced["student"]["val_accuracy"] == results["best"]["val_accuracy"]
    assert reproduced["baseline"] == results["baseline"]  # the same schedule, alone
    with pytest.MonkeyPatch.context() as patch:  # the same command again: nothing to train
        patch.setattr(fitting, "train_classifier", lambda *a, **k: pytest.fail("retrained"))
        patch.setattr(experiment, "run", lambda *a, **k: pytest.fail("re-ran a trial"))
        again = run_tune(*args)
    assert again["best"] == results["best"] and again["baseline"] == results["baseline"]


def test_a_search_with_a_teaching_mode_reproduces_on_images(tmp_path):
    rng = np.random.default_rng(0)
    for split, count in (("train", 400), ("test", 100)):
        labels = rng.integers(0, 4, count)
        images = rng.random((count, 8, 8, 3)) * 60 + labels[:, None, None, None] * 50
        np.savez(tmp_path / f"{split}.npz", x=images.astype(np.uint8), y=labels)
    (tmp_path / "space.json").write_text(json.dumps(SPACE))
    out = tmp_path / "out"
    results = run_tune(
        f"--dataset=npz:{tmp_path}",
        "--teacher=cnn_small",
        "--teacher_epochs=1",
        "--student=cnn_small",
        "--epochs=2",
        "--batch_size=64",
        "--optimizer=adam",
        "--verbose=0",
        "--export=keras",
        "--teaching=consistent",
        f"--search_space={tmp_path / 'space.json'}",
        "--max_trials=1",
        "--deterministic",
        f"--output_dir={out}",
    )
    trial = read_json(out / results["best"]["run"] / "results.json")
    assert trial["teaching"]["teaching"] == "consistent"
    reproduced = distill.main(
        ["bin/distill", f"--flagfile={out / 'best.flags'}", f"--output_dir={tmp_path / 'd'}"]
    )
    assert reproduced["teaching"]["teaching"] == "consistent"
    assert reproduced["student"]["val_accuracy"] == results["best"]["val_accuracy"]


# ---- the hypermodel with other tuners -------------------------------------------------------


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    """An (untrained) mlp teacher saved as .keras, so that trials load it."""
    from tfkd import models

    bundle = data.load(
        data.DataConfig(
            "synthetic",
            synthetic_size=600,
            synthetic_dim=12,
            synthetic_classes=4,
            synthetic_superclasses=2,
        )
    )
    teacher = models.build("mlp", bundle.input_shape, bundle.num_classes, *bundle.stats(), seed=1)
    path = tmp_path_factory.mktemp("teacher") / "teacher.keras"
    teacher.save(path)
    return str(path)


def file_config(teacher_file, *extra):
    return experiment.RunConfig.from_flags(
        TINY + [f"--teacher={teacher_file}", "--epochs=1", *extra]
    )


@pytest.mark.parametrize("kind", ["hyperband", "bayesian"])
def test_other_tuners_run(teacher_file, tmp_path, kind):
    # Hyperband at --epochs=3 trains 3 trials for 1 epoch, then continues the best for 3.
    config = file_config(teacher_file, "--epochs=3" if kind == "hyperband" else "--epochs=1")
    hypermodel = tuning.DistillerHyperModel(config, SPACE, directory=str(tmp_path))
    tuner = tuning.make_tuner(
        kind, hypermodel, str(tmp_path), max_trials=4 if kind == "hyperband" else 2
    )
    tuning.run_search(tuner, verbose=0)
    rows = tuning.trials_table(tuner)
    assert {row["status"] for row in rows} == {"COMPLETED"}
    for row in rows:
        ran = read_json(os.path.join(tuning.run_dir(tuner, row["trial"]), "results.json"))
        assert ran["student"]["val_accuracy"] == row["val_accuracy"]
        assert ran["flags"]["epochs"] == row.get("epochs", 1)
    if kind == "hyperband":
        assert sorted(row["epochs"] for row in rows) == [1, 1, 1, 3]
    bundle = data.load(config.data)
    best = tuning.best_trial(tuner)
    assert best.score == accuracy_of(tuning.load_student(tuner, best), bundle.validation)


def test_a_plain_keras_tuner_tuner_runs_trials_in_keyed_folders(teacher_file, tmp_path):
    config = file_config(teacher_file)
    hypermodel = tuning.DistillerHyperModel(config, SPACE, directory=str(tmp_path))
    tuner = keras_tuner.RandomSearch(
        hypermodel,
        objective=keras_tuner.Objective("val_accuracy", "max"),
        max_trials=1,
        directory=str(tmp_path),
        project_name="plain",
    )
    tuner.search(verbose=0)
    trial = tuner.oracle.get_best_trials(1)[0]
    folders = os.listdir(tmp_path / "runs")
    assert len(folders) == 1
    ran = read_json(tmp_path / "runs" / folders[0] / "results.json")
    assert trial.score == ran["student"]["val_accuracy"]
    assert ran["flags"]["learning_rate"] == trial.hyperparameters.get("learning_rate")
    # The same values again: the finished run is read, not trained again.
    runs = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(experiment, "run", lambda c: runs.append(c) or pytest.fail("re-ran"))
        again = hypermodel.fit(trial.hyperparameters, hypermodel.build(trial.hyperparameters))
    assert again["val_accuracy"] == trial.score and not runs


def test_a_killed_trial_resumes_from_its_last_epoch(teacher_file, tmp_path, capsys):
    from tfkd import checkpoint

    (tmp_path / "space.json").write_text(json.dumps(SPACE))
    args = TINY + [
        f"--teacher={teacher_file}",
        f"--search_space={tmp_path / 'space.json'}",
        "--max_trials=1",
        f"--output_dir={tmp_path / 'out'}",
    ]
    save = checkpoint.EpochCheckpoint.on_epoch_end

    def killed_after_the_first_epoch(self, epoch, logs=None):
        save(self, epoch, logs)
        raise KeyboardInterrupt  # not an Exception: keras-tuner lets it through, as a kill

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checkpoint.EpochCheckpoint, "on_epoch_end", killed_after_the_first_epoch)
        with pytest.raises(KeyboardInterrupt):
            run_tune(*args)
    assert (tmp_path / "out" / "tuner" / "trial_0" / "run.partial").is_dir()
    capsys.readouterr()
    results = run_tune(*args)
    assert "Resuming distill at epoch 2 of 2" in capsys.readouterr().out
    assert results["trials"] == {"COMPLETED": 1}
    history = read_csv(tmp_path / "out" / "history.csv")
    assert [row["epoch"] for row in history] == ["0", "1"]


# ---- failures -------------------------------------------------------------------------------


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


def flaky_tuner(teacher_file, directory, max_trials, **kwargs):
    hypermodel = FlakyHyperModel(file_config(teacher_file), SPACE, **kwargs)
    return tuning.make_tuner("random", hypermodel, str(directory), max_trials=max_trials)


def test_a_trial_failing_for_its_values_is_recorded_and_three_in_a_row_stop(teacher_file, tmp_path):
    tuner = flaky_tuner(teacher_file, tmp_path, 8, failing={1, 3, 4, 5})
    with pytest.raises(
        tuning.SearchError,
        match=r"^trial 5 \(temperature=.*RuntimeError: trial "
        r"number 5 diverged; 3 trials failed in a row",
    ):
        tuning.run_search(tuner, verbose=0)
    assert tuner.hypermodel.calls == 6
    rows = tuning.trials_table(tuner)
    statuses = {row["trial"]: row["status"] for row in rows}
    # Trial 1 failed for its values and the search went on; 5 is left running, to be retried
    # when the search resumes.
    assert statuses == {
        "0": "COMPLETED",
        "1": "FAILED",
        "2": "COMPLETED",
        "3": "FAILED",
        "4": "FAILED",
        "5": "RUNNING",
    }
    failed = next(row for row in rows if row["trial"] == "1")
    assert failed.get("val_accuracy") is None
    assert failed["error"].endswith("RuntimeError: trial number 1 diverged")
    assert [row["status"] for row in rows[:2]] == ["COMPLETED", "COMPLETED"]


@pytest.mark.parametrize(
    "error, expected",
    [
        (RuntimeError, "trial 0 .* no trial has completed"),
        (AttributeError, "trial 0 .*AttributeError.* set-up"),
    ],
)
def test_a_first_trial_failure_stops_the_search(teacher_file, tmp_path, error, expected):
    tuner = flaky_tuner(teacher_file, tmp_path, 5, failing={0, 1}, error=error)
    with pytest.raises(tuning.SearchError, match=expected):
        tuning.run_search(tuner, verbose=0)
    assert tuner.hypermodel.calls == 1


def test_a_missing_module_in_a_run_stops_the_search_with_one_error(
    teacher_file, tmp_path, monkeypatch
):
    calls = []

    def distill_phase(*args, **kwargs):
        calls.append(1)
        raise ModuleNotFoundError("No module named 'tensorboard.plugins.hparams'")

    monkeypatch.setattr(distillation, "distill", distill_phase)
    (tmp_path / "space.json").write_text(json.dumps(SPACE))
    with pytest.raises(ValueError, match=r"^trial 0 \(temperature=") as error:
        run_tune(
            *TINY,
            f"--teacher={teacher_file}",
            f"--search_space={tmp_path / 'space.json'}",
            "--max_trials=3",
            f"--output_dir={tmp_path / 'out'}",
        )
    message = str(error.value)
    assert isinstance(error.value, tuning.SearchError) and "\n" not in message
    assert message.startswith("trial 0 (temperature=") and "ModuleNotFoundError" in message
    assert "tensorboard.plugins.hparams" in message and "set-up" in message
    assert len(calls) == 1  # stopped at the first trial
    assert not (tmp_path / "out" / "trials.csv").exists()


def test_a_memory_cache_is_computed_once_for_the_whole_search(tmp_path):
    """--teacher_cache=memory in bin/tune: the first trial builds one disk entry, the others
    read it."""
    from tfkd import tuning as tuning_package
    from tfkd.experiment import RunConfig

    out = tmp_path / "search"
    config = RunConfig.from_flags(TINY + ["--teacher_cache=memory", f"--output_dir={out}"])
    tuning_package.tune(
        config, tuner="random", max_trials=2, search_space={"temperature": [1.0, 2.0, 4.0, 8.0]}
    )
    caches = [
        json.loads((trial / "run" / "results.json").read_text())["teacher_cache"]
        for trial in sorted((out / "tuner").glob("trial_*"))
    ]
    assert len(caches) == 2 and [entry["built"] for entry in caches] == [True, False]
    assert caches[0]["key"] == caches[1]["key"]
    assert os.path.dirname(caches[0]["path"]).startswith(str(out / "cache"))
