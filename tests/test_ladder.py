"""bin/ladder and tfkd.experiment.calibration_ladder on tiny data: the rows against NumPy, the students
against tfkd.experiment.run, resuming, and bad flags."""

import dataclasses
import glob
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tfkd import data, experiment, models, training
from tfkd.cli import ladder as ladder_cli
from tfkd.experiment import calibration_ladder as ladder
from tfkd.experiment import distillation, fitting, job
from tfkd.experiment.teacher_outputs import TeachingRun

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNTHETIC = [
    "--dataset=synthetic",
    "--synthetic_size=600",
    "--synthetic_dim=12",
    "--synthetic_classes=4",
    "--synthetic_superclasses=2",
]
TRAIN = [
    "--teacher_epochs=2",
    "--student=mlp_small",
    "--epochs=2",
    "--batch_size=64",
    "--optimizer=adam",
    "--learning_rate=0.01",
    "--verbose=0",
]


def run_ladder(args):
    """What `bin/ladder ARGS` runs, in this process; returns ladder.json's dictionary."""
    return ladder_cli.main(["bin/ladder", *args])


def logits(model, split):
    return np.asarray(model.predict(data.to_float(split[0]), verbose=0), np.float64)


def nll(logits_, labels, temperature):
    """Mean -log softmax(z / T)[y], from the definition."""
    scaled = logits_ / temperature
    top = scaled.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(scaled - top).sum(axis=1))
    return float(np.mean(log_norm - scaled[np.arange(len(labels)), labels]))


def weights(path):
    return keras.saving.load_model(path).get_weights()


def same_weights(first, second):
    return len(first) == len(second) and all(np.array_equal(a, b) for a, b in zip(first, second))


def save_trained(arch, bundle, path, epochs=1):
    """`arch` trained briefly with cross-entropy and saved: a teacher made outside the ladder."""
    keras.utils.set_random_seed(5)
    model = models.build(arch, bundle.input_shape, bundle.num_classes, *bundle.stats())
    training.compile_classifier(
        model,
        training.TrainConfig(epochs=epochs, batch_size=64, optimizer="adam", learning_rate=0.01),
        8,
    )
    model.fit(
        data.to_float(bundle.train[0]), bundle.train[1], batch_size=64, epochs=epochs, verbose=0
    )
    model.save(path)
    return str(path)


def synthetic_bundle():
    return data.load(experiment.RunConfig.from_flags(SYNTHETIC).data)


# ---- the table ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def table(tmp_path_factory):
    root = tmp_path_factory.mktemp("ladder")
    loaded = save_trained("mlp_small", synthetic_bundle(), root / "fixed_teacher.keras")
    out = root / "run"
    results = run_ladder(
        SYNTHETIC
        + TRAIN
        + [
            f"--ladder_teachers=mlp,{loaded}",
            "--ladder_modes=replace",
            "--baseline",
            f"--output_dir={out}",
        ]
    )
    return out, loaded, results


def test_rows_measure_each_teacher_against_numpy(table):
    out, loaded, results = table
    assert [row["teacher"] for row in results["rows"]] == ["mlp", "fixed_teacher"]
    assert results["modes"] == ["none", "replace"]
    bundle = synthetic_bundle()
    for row, path in zip(results["rows"], (out / "teachers" / "mlp.keras", loaded)):
        teacher = keras.saving.load_model(path)
        assert row["params"] == teacher.count_params()
        validation, test = logits(teacher, bundle.validation), logits(teacher, bundle.test)
        assert row["accuracy"] == pytest.approx(np.mean(test.argmax(1) == bundle.test[1]))
        # T* minimises the validation NLL: no temperature on a fine grid does better.
        grid = np.geomspace(0.05, 50, 4000)
        best = grid[np.argmin([nll(validation, bundle.validation[1], t) for t in grid])]
        assert row["temperature"] == pytest.approx(best, rel=5e-3)
        assert row["nll_before"] == pytest.approx(nll(test, bundle.test[1], 1.0), rel=1e-5)
        assert row["nll_after"] == pytest.approx(
            nll(test, bundle.test[1], row["temperature"]), rel=1e-5
        )
        assert row["fit_split"] == "validation" and row["eval_split"] == "test"
        for when in ("before", "after"):
            assert (out / "reliability" / row["teacher"] / f"reliability_{when}.png").exists()


def test_students_are_distilled_under_each_mode_and_saved(table):
    out, _, results = table
    bundle = synthetic_bundle()
    for row in results["rows"]:
        for mode in results["modes"]:
            cell = row["student"][mode]
            assert cell["seeds"] == [0] and len(cell["accuracies"]) == 1
            student = keras.saving.load_model(
                out / "students" / row["teacher"] / mode / "seed_0" / "student.keras"
            )
            assert cell["mean"] == pytest.approx(
                np.mean(logits(student, bundle.test).argmax(1) == bundle.test[1])
            )
            options = cell["teaching"][0]["options"]
            # "replace" distills at T = T*; "none" at the method's own temperature.
            assert options["temperature"] == (row["temperature"] if mode == "replace" else 4.0)
        assert row["seconds"]["replace"] > 0
    alone = keras.saving.load_model(out / "baseline" / "seed_0" / "student.keras")
    assert alone.count_params() == student.count_params()
    assert results["baseline"]["accuracies"] == [
        pytest.approx(np.mean(logits(alone, bundle.test).argmax(1) == bundle.test[1]))
    ]


def test_outputs_are_the_ladder_files(table):
    out, _, results = table
    on_disk = json.loads((out / "ladder.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    assert json.loads((out / "results.json").read_text()) == on_disk
    table_text = (out / "ladder.md").read_text()
    assert "| mlp |" in table_text and "| fixed_teacher |" in table_text
    assert "bin/ladder" in table_text and "--ladder_modes=replace" in table_text
    assert "Student mlp_small trained alone" in table_text
    assert (out / "ladder.png").stat().st_size > 10000
    assert (out / "teachers" / "mlp.keras").exists()
    assert not (out / "teachers" / "fixed_teacher.keras").exists()  # loaded, not trained
    assert not glob.glob(str(out) + ".partial*")
    assert not glob.glob(str(out / "**" / "checkpoints"), recursive=True)
    assert not glob.glob(str(out / "**" / "phases.json"), recursive=True)
    flags = on_disk["flags"]
    assert flags["ladder_teachers"][0] == "mlp" and flags["ladder_modes"] == ["replace"]
    assert "teacher" not in flags and "calibrate_teacher" not in flags


# ---- the same student as bin/distill ------------------------------------------------------------
def npz_images(root, n_train=200, n_test=60, classes=3):
    """8x8 grey images whose classes differ in mean brightness (learnable in a few steps)."""
    rng = np.random.default_rng(0)
    root.mkdir()
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, classes, n)
        base = (labels * (200 // (classes - 1)))[:, None, None, None]
        x = np.clip(base + rng.normal(0, 20, (n, 8, 8, 1)), 0, 255).astype(np.uint8)
        np.savez(root / f"{split}.npz", x=x, y=labels)
    return f"npz:{root}"


def test_cell_is_the_run_with_the_same_settings_teaching_included(tmp_path):
    images = [
        "--dataset=" + npz_images(tmp_path / "images"),
        "--student=cnn_small",
        "--epochs=1",
        "--batch_size=64",
        "--optimizer=adam",
        "--learning_rate=0.01",
        "--verbose=0",
    ]
    bundle = data.load(experiment.RunConfig.from_flags(images).data)
    teacher = save_trained("cnn_small", bundle, tmp_path / "teacher.keras")
    results = run_ladder(
        images
        + [
            "--teaching=consistent",
            f"--ladder_teachers={teacher}",
            "--ladder_modes=scale",
            f"--output_dir={tmp_path / 'ladder'}",
        ]
    )
    cells = tmp_path / "ladder" / "students" / "teacher"
    for mode in ("none", "scale"):
        recorded = results["rows"][0]["student"][mode]["teaching"][0]
        assert recorded["teaching"] == "consistent"
        assert recorded["augmentation"]["mode"] == "consistent"
        assert recorded["augmentation"]["seed"] == 0
    distill = images + [
        f"--teacher={teacher}",
        "--export=keras",
        "--calibrate_teacher",
        "--calibration_mode=scale",
    ]
    alone = experiment.run(
        experiment.RunConfig.from_flags(
            distill + ["--teaching=consistent", f"--output_dir={tmp_path / 'distill'}"]
        )
    )
    # --calibration_mode=scale through bin/distill: the ladder's scale cell, weight for weight.
    assert alone["calibration"]["temperature"] == results["rows"][0]["temperature"]
    assert same_weights(
        weights(cells / "scale" / "seed_0" / "student.keras"),
        weights(tmp_path / "distill" / "student.keras"),
    )
    assert alone["student"]["accuracy"] == results["rows"][0]["student"]["scale"]["mean"]
    # Without --teaching the student differs, so the equality above depends on the mode.
    plain = experiment.run(
        experiment.RunConfig.from_flags(distill + [f"--output_dir={tmp_path / 'plain'}"])
    )
    assert plain["teaching"]["teaching"] == "none"
    assert not same_weights(
        weights(tmp_path / "plain" / "student.keras"),
        weights(tmp_path / "distill" / "student.keras"),
    )


def test_each_student_seed_draws_its_own_teaching_augmentation():
    config = experiment.RunConfig.from_flags(SYNTHETIC + ["--teaching=consistent", "--seed=3"])
    method = job.check(config)
    base = TeachingRun(config, method, method.resolve({}), synthetic_bundle())
    seeded = ladder.teaching_for_seed(base, 4)
    assert seeded.teaching.seed == 4 and base.teaching.seed == 3
    assert seeded.teaching.mode == base.teaching.mode == "consistent"
    variant = ladder.student_config(config, 4)
    assert variant.seed == 4 and variant.data == dataclasses.replace(config.data, seed=4)
    assert variant.schedule == config.schedule and variant.teaching == config.teaching


# ---- resuming -----------------------------------------------------------------------------------
def test_a_killed_ladder_resumes_without_retraining_what_finished(tmp_path, monkeypatch):
    out = tmp_path / "run"
    args = (
        SYNTHETIC
        + TRAIN
        + [
            "--epochs=1",
            "--ladder_teachers=mlp",
            "--ladder_modes=",
            "--ladder_seeds=2",
            f"--output_dir={out}",
        ]
    )
    original = distillation.distill
    seeds = []

    def killed_at_the_second_student(method, config, *rest):
        seeds.append(config.seed)
        if len(seeds) == 2:
            raise KeyboardInterrupt
        return original(method, config, *rest)

    monkeypatch.setattr(distillation, "distill", killed_at_the_second_student)
    with pytest.raises(KeyboardInterrupt):
        run_ladder(args)
    partial = tmp_path / "run.partial"
    finished = json.loads((partial / "phases.json").read_text())
    assert set(finished) == {"teachers/mlp", "calibration/mlp", "students/mlp/none/seed_0"}
    teacher = weights(partial / "teachers" / "mlp.keras")

    with pytest.raises(ValueError, match="other flags.*ladder_seeds"):
        run_ladder([arg for arg in args if arg != "--ladder_seeds=2"] + ["--ladder_seeds=3"])

    def no_training(*args, **kwargs):
        raise AssertionError("a finished teacher was trained again")

    monkeypatch.setattr(fitting, "train_classifier", no_training)
    seeds.clear()
    monkeypatch.setattr(
        distillation,
        "distill",
        lambda method, config, *rest: (seeds.append(config.seed), original(method, config, *rest))[
            1
        ],
    )
    results = run_ladder(args)
    assert seeds == [1] and results["resumed"]
    assert same_weights(weights(out / "teachers" / "mlp.keras"), teacher)
    row = results["rows"][0]
    assert row["temperature"] == finished["calibration/mlp"]["temperature"]
    assert (
        row["student"]["none"]["accuracies"][0]
        == (finished["students/mlp/none/seed_0"]["accuracy"])
    )
    # Two seeds, two students: the seed reaches the initialisation and the batches.
    students = out / "students" / "mlp" / "none"
    assert not same_weights(
        weights(students / "seed_0" / "student.keras"),
        weights(students / "seed_1" / "student.keras"),
    )


# ---- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "extra,message",
    [
        (["--teacher=mlp"], "--teacher does not apply"),
        (["--calibrate_teacher"], "--calibrate_teacher does not apply"),
        (["--ladder_teachers=mlp,nope"], "'nope' is neither"),
        (["--ladder_teachers=mlp,mlp"], "two teachers are named mlp"),
        (["--ladder_teachers="], "at least one teacher"),
        (["--ladder_modes=scale,twice"], "unknown or repeated mode"),
        (["--ladder_seeds=0"], "--ladder_seeds"),
        (["--method=ls"], "uses no teacher"),
        (["--method=aver"], "multi-teacher"),
        (["--validation_fraction=0"], "--validation_fraction"),
        (["--student=nope"], "--student"),
        (["--pacing=linear"], "--curriculum"),
        (["--teaching=consistent", "--augment"], "--augment"),
        (["--synthetic_size=12", "--validation_fraction=0.01"], "validation split"),
    ],
)
def test_bad_flags_are_one_error_and_no_folder(extra, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        run_ladder(
            SYNTHETIC
            + TRAIN
            + ["--ladder_teachers=mlp"]
            + extra
            + [f"--output_dir={tmp_path / 'run'}"]
        )
    assert os.listdir(tmp_path) == []


def test_a_teacher_for_other_data_is_refused_before_any_training(tmp_path):
    three = keras.Sequential([keras.Input((12,)), keras.layers.Dense(3)])
    three.save(tmp_path / "three.keras")
    with pytest.raises(ValueError, match=r"number of classes.*\(None, 3\)"):
        run_ladder(
            SYNTHETIC
            + TRAIN
            + [
                f"--ladder_teachers=mlp,{tmp_path / 'three.keras'}",
                f"--output_dir={tmp_path / 'run'}",
            ]
        )
    assert sorted(os.listdir(tmp_path)) == ["three.keras"]


def test_library_refuses_calibrate_teacher():
    config = experiment.RunConfig.from_flags(SYNTHETIC + ["--calibrate_teacher"])
    with pytest.raises(ValueError, match="run.calibration.enabled does not apply") as caught:
        ladder.run_ladder(config, ["mlp"])
    assert caught.value.field == "run.calibration.enabled"


def test_help_lists_the_ladder_flags_and_every_distill_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        run_ladder(["--help"])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert "bin/ladder:" in printed
    for name in (
        "ladder_teachers",
        "ladder_modes",
        "ladder_seeds",
        "teaching",
        "curriculum",
        "temperature",
        "baseline",
        "teacher_epochs",
    ):
        assert f"--{name}" in printed or f"--[no]{name}" in printed, name


def test_bin_ladder_prints_one_clear_line(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TFKD_DEBUG", None)
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "bin", "ladder"),
            *SYNTHETIC,
            "--ladder_teachers=resnet8,nope",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "ladder: error:" in line]
    assert len(errors) == 1 and "--ladder_teachers" in errors[0], result.stderr
