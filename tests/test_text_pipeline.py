"""The whole job on text: a killed run resumes exactly, two workers take the one worker's steps,
mixed_bfloat16 trains in bfloat16 and saves float32, bin/tune searches and its best.flags
reproduces the best trial, the teacher cache, calibration and curriculum see the teacher's
per-example logits, and bin/calibrate, bin/export and bin/analyze read a run's text models.

One generated corpus (text_synthetic, 240 texts of 3 classes, 12 tokens, a WordPiece vocabulary
fitted on the training split) and one KerasHub BERT teacher trained here serve every test; the
runs in real processes (the reference, the killed one, the cluster) share one module fixture.
"""

import json
import os

import keras
import numpy as np
import pytest
from cluster import run_cluster, run_one

import tfkd
from tfkd import data, training, tuning
from tfkd.cli import analyze as analyze_cli
from tfkd.cli import calibrate as calibrate_cli
from tfkd.cli import export as export_cli
from tfkd.experiment import RunConfig, run
from tfkd.exporting import text_signatures
from tfkd.teacher import loading

LENGTH, CLASSES = 12, 3
DATA = [
    "--dataset=text_synthetic",
    "--synthetic_size=240",
    f"--synthetic_classes={CLASSES}",
    f"--sequence_length={LENGTH}",
    "--vocabulary_size=80",
    "--validation_fraction=0.2",
    "--seed=0",
]
TRAINING = [
    "--student=text_cnn",
    "--epochs=2",
    "--batch_size=32",
    "--optimizer=adam",
    "--learning_rate=0.01",
    "--verbose=0",
    "--deterministic",
    "--export=keras",
]
# Two workers add their halves of each gradient in an all-reduce, one worker sums the whole batch
# at once: the same numbers added in another order, so float32 weights differ in the last bits
# and Adam carries the difference on. Measured after 2 epochs of 5 steps: at most 1.25e-6 of the
# largest weight of a tensor (the student's convolution kernel).
TWO_WORKERS = 5e-6
pytestmark = pytest.mark.timeout(1500)


def softmax(z, temperature=1.0):
    z = np.asarray(z, np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(logits, labels, temperature):
    return float(-np.mean(np.log(softmax(logits, temperature)[np.arange(len(labels)), labels])))


def ece(probs, labels, bins=15):
    """Guo et al.: sum over equal-width confidence bins of |accuracy - confidence| * share."""
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    total = 0.0
    for low, high in zip(np.linspace(0, 1, bins + 1)[:-1], np.linspace(0, 1, bins + 1)[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return total


def best_temperature(logits, labels):
    """T minimising the NLL on a fine logarithmic grid (the reference of T*)."""
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 4001))
    return grid[np.argmin([nll(logits, labels, t) for t in grid])]


def weights(path):
    return loading.load_model(str(path)).get_weights()


def predict(model, x):
    return np.asarray(model.predict(data.to_float(x), verbose=0), np.float64)


@pytest.fixture(scope="module")
def corpus():
    return data.load(RunConfig.from_flags(DATA).data)


@pytest.fixture(scope="module")
def teacher(corpus, tmp_path_factory):
    """A one-layer KerasHub BERT trained here, saved with its vocabulary.txt beside it."""
    import keras_hub

    folder = tmp_path_factory.mktemp("teacher")
    corpus.tokenizer.save(str(folder))
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=corpus.vocabulary_size,
        num_layers=1,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        dropout=0.0,
        max_sequence_length=LENGTH,
    )
    model = keras_hub.models.BertTextClassifier(backbone, CLASSES, preprocessor=None, dropout=0.0)
    model.compile(
        optimizer=keras.optimizers.Adam(0.003),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(data.to_float(corpus.train[0]), corpus.train[1], batch_size=32, epochs=6, verbose=0)
    model.save(folder / "teacher.keras")
    return folder / "teacher.keras"


def distill_args(teacher, *extra):
    return [*DATA, f"--teacher={teacher}", *TRAINING, *extra]


def outcome(out):
    results = json.loads((out / "results.json").read_text())
    return (
        {role: results[role]["accuracy"] for role in ("teacher", "student")},
        weights(out / "student.keras"),
        (out / "history.csv").read_text(),
    )


@pytest.fixture(scope="module")
def reference(teacher, tmp_path_factory):
    """The uninterrupted run on one worker of MultiWorkerMirroredStrategy, in its own process."""
    folder = tmp_path_factory.mktemp("one_worker")
    run_one(distill_args(teacher, "--strategy=multiworker", "--output_dir=out"), folder)
    return folder / "out"


def test_a_killed_text_run_resumes_exactly(teacher, reference, tmp_path):
    args = distill_args(teacher, "--strategy=multiworker", "--output_dir=out")
    # SIGKILL after the first step of epoch 2: the checkpoint of epoch 1 (weights, Adam's
    # state, the epoch's logs) is what is left, and the re-run goes on from it.
    killed = run_one(args, tmp_path, check=False, TFKD_FAULT="distill:2:1")
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert not (tmp_path / "out").exists()
    last = run_one(args, tmp_path)
    assert "Resuming distill at epoch 2 of 2" in last.stdout
    mine, expected = outcome(tmp_path / "out"), outcome(reference)
    assert mine[0] == expected[0]
    assert mine[2] == expected[2]
    for a, b in zip(mine[1], expected[1], strict=True):
        np.testing.assert_array_equal(a, b)


def test_two_workers_take_the_steps_of_one(teacher, reference, tmp_path):
    args = distill_args(teacher, "--strategy=multiworker", "--output_dir=out")
    run_cluster(args, 2, tmp_path)
    mine, expected = outcome(tmp_path / "out"), outcome(reference)
    assert mine[0] == expected[0]
    # Same losses per epoch to the same tolerance.
    for row, expected_row in zip(mine[2].splitlines()[1:], expected[2].splitlines()[1:]):
        np.testing.assert_allclose(
            np.array(row.split(","), float), np.array(expected_row.split(","), float), rtol=1e-5
        )
    for a, b in zip(mine[1], expected[1], strict=True):
        assert np.max(np.abs(a - b)) <= TWO_WORKERS * max(np.max(np.abs(b)), 1e-6)


# ---------------------------------------------------------------------------- mixed_bfloat16


@pytest.mark.parametrize("arch", ["text_cnn", "bert_tiny"])
def test_a_mixed_step_on_a_text_model_follows_the_float32_step(arch, corpus):
    """The zoo's text models compute in bfloat16 and give float32 logits: from the same weights
    on the same batch, the logits and the KD loss differ from float32's by bfloat16's precision
    (8 bits of mantissa); so does the text CNN's update. (A BERT's deeper updates are far below
    the resolution of its bfloat16 activations: they agree in sign and size only.)"""
    x, y = data.to_float(corpus.train[0][:32]), corpus.train[1][:32]
    teacher = tfkd.models.build("text_cnn", (LENGTH,), CLASSES, vocabulary_size=80, seed=5)
    initial = tfkd.models.build(arch, (LENGTH,), CLASSES, vocabulary_size=80, seed=1)
    results = {}
    for precision in training.PRECISIONS:
        with training.precision_policy(precision):
            student = tfkd.models.build(arch, (LENGTH,), CLASSES, vocabulary_size=80, seed=1)
        student.set_weights(initial.get_weights())
        computes = {layer.compute_dtype for layer in student.layers if layer.weights}
        logits = student(x)
        assert logits.dtype == "float32"
        assert all(w.dtype == "float32" for w in student.weights)
        distiller = tfkd.Distiller(student, teacher, temperature=4.0, alpha=0.9)
        distiller.compile(optimizer=keras.optimizers.SGD(0.5))
        logs = distiller.train_on_batch(x, y, return_dict=True)
        results[precision] = computes, np.asarray(logits), logs["loss"], student.get_weights()
    (computes32, logits32, loss32, weights32), (computes16, logits16, loss16, weights16) = (
        results["float32"],
        results["mixed_bfloat16"],
    )
    assert computes32 == {"float32"} and "bfloat16" in computes16
    difference = np.abs(logits16 - logits32).max()
    assert 0 < difference <= 2**-7 * np.abs(logits32).max() * 4
    assert loss16 == pytest.approx(loss32, rel=2e-2) and loss16 != loss32
    moved = max(np.abs(w - w0).max() for w, w0 in zip(weights32, initial.get_weights()))
    assert moved > 1e-3
    differences = max(np.abs(a - b).max() for a, b in zip(weights16, weights32))
    assert 0 < differences <= (0.05 if arch == "text_cnn" else 0.5) * moved


def test_a_mixed_text_run_trains_in_bfloat16_and_saves_float32(teacher, reference, tmp_path):
    results = run(RunConfig.from_flags(distill_args(teacher, f"--output_dir={tmp_path / 'out'}")))
    mixed = run(
        RunConfig.from_flags(
            distill_args(
                teacher, "--precision=mixed_bfloat16", f"--output_dir={tmp_path / 'mixed'}"
            )
        )
    )
    assert mixed["flags"]["precision"] == "mixed_bfloat16"
    student = loading.load_model(str(tmp_path / "mixed" / "student.keras"))
    assert student.dtype_policy.name == "float32"
    assert {layer.compute_dtype for layer in student.layers} == {"float32"}
    # float32 on one device and on one worker of a cluster take the same steps; bfloat16 keeps
    # 8 bits of mantissa, so its student ends near, not at, the float32 student.
    plain = weights(tmp_path / "out" / "student.keras")
    for a, b in zip(plain, weights(reference / "student.keras")):
        np.testing.assert_array_equal(a, b)
    relative = max(
        float(np.abs(a - b).max() / np.abs(b).max()) for a, b in zip(student.get_weights(), plain)
    )
    assert 1e-3 < relative < 0.5, relative
    assert abs(mixed["student"]["accuracy"] - results["student"]["accuracy"]) <= 0.15


# ------------------------------------------------------------------------------------ bin/tune


def test_a_search_on_text_writes_best_flags_that_reproduce_the_best_trial(tmp_path):
    output = tmp_path / "search"
    config = RunConfig.from_flags(
        [*DATA, "--teacher=text_cnn", "--teacher_epochs=1", *TRAINING, "--epochs=1"]
        + [f"--output_dir={output}"]
    )
    found = tuning.tune(
        config, max_trials=2, search_space={"temperature": [1.0, 4.0], "alpha": [0.5, 0.9]}
    )
    assert sum(found["trials"].values()) == 2 and found["trials"].get("COMPLETED") == 2
    # The teachers of the search and its exported student keep the vocabulary beside them.
    fitted = (output / "vocabulary.txt").read_text()
    assert (output / "teachers" / "vocabulary.txt").read_text() == fitted
    again = run(
        RunConfig.from_flags(
            [f"--flagfile={output / 'best.flags'}", f"--output_dir={tmp_path / 'again'}"]
        )
    )
    assert (tmp_path / "again" / "vocabulary.txt").read_text() == fitted
    assert again["student"]["val_accuracy"] == found["best"]["val_accuracy"]
    assert again["student"]["accuracy"] == found["student"]["accuracy"]
    for a, b in zip(
        weights(tmp_path / "again" / "student.keras"), weights(output / "student.keras")
    ):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------- teacher cache, calibration, curriculum


def test_cache_calibration_and_curriculum_read_the_teachers_logits(corpus, teacher, tmp_path):
    cache = tmp_path / "cache"
    results = run(
        RunConfig.from_flags(
            distill_args(
                teacher,
                "--epochs=1",
                "--calibrate_teacher",
                "--curriculum=teacher",
                "--teacher_cache=disk",
                f"--cache_dir={cache}",
                f"--output_dir={tmp_path / 'out'}",
            )
        )
    )
    model = loading.load_model(str(teacher))
    validation, test = predict(model, corpus.validation[0]), predict(model, corpus.test[0])
    train = predict(model, corpus.train[0])
    # T* minimises the validation NLL; ECE measured on the test split before and after.
    calibration = results["calibration"]
    temperature = calibration["temperature"]
    assert temperature == pytest.approx(best_temperature(validation, corpus.validation[1]), 2e-3)
    assert calibration["ece_before"] == pytest.approx(ece(softmax(test), corpus.test[1]), abs=1e-6)
    assert calibration["ece_after"] == pytest.approx(
        ece(softmax(test, temperature), corpus.test[1]), abs=1e-6
    )
    # The curriculum scores every training example by the calibrated teacher.
    scores = np.load(tmp_path / "out" / "curriculum.npz")
    probabilities = softmax(train, temperature)
    np.testing.assert_array_equal(scores["labels"], corpus.train[1])
    np.testing.assert_array_equal(scores["correct"], probabilities.argmax(1) == corpus.train[1])
    np.testing.assert_allclose(scores["confidence"], probabilities.max(1), rtol=1e-5)
    # The cache holds the calibrated teacher's logits of every training and validation example.
    entries = {}
    for name in os.listdir(cache):
        manifest = cache / name / "manifest.json"
        if manifest.is_file():
            for array in json.loads(manifest.read_text())["arrays"]:
                stored = np.load(cache / name / f"{array}.npy")
                entries[len(stored)] = stored
    assert sorted(entries) == sorted([len(corpus.validation[1]), len(corpus.train[1])])
    for split, logits in ((corpus.train, train), (corpus.validation, validation)):
        np.testing.assert_allclose(
            entries[len(split[1])], logits / temperature, rtol=1e-4, atol=1e-5
        )
    assert 0.0 <= results["student"]["accuracy"] <= 1.0


# --------------------------------------------------- bin/calibrate, bin/export, bin/analyze


def test_bin_calibrate_reads_a_text_teacher_with_its_vocabulary(corpus, teacher, tmp_path):
    saved = tmp_path / "calibrated" / "teacher.keras"
    summary = calibrate_cli.main(
        ["bin/calibrate", f"--model={teacher}", *DATA, f"--report_dir={tmp_path / 'report'}"]
        + [f"--save={saved}"]
    )
    model = loading.load_model(str(teacher))
    validation, test = predict(model, corpus.validation[0]), predict(model, corpus.test[0])
    temperature = summary["temperature"]
    assert temperature == pytest.approx(best_temperature(validation, corpus.validation[1]), 2e-3)
    assert summary["ece_before"] == pytest.approx(ece(softmax(test), corpus.test[1]), abs=1e-6)
    assert summary["ece_after"] == pytest.approx(
        ece(softmax(test, temperature), corpus.test[1]), abs=1e-6
    )
    assert summary["sizes"] == {"validation": len(validation), "test": len(test)}
    assert str(teacher.parent / "vocabulary.txt") in summary["tokenizer"]
    np.testing.assert_allclose(
        predict(loading.load_model(str(saved)), corpus.test[0]), test / temperature, rtol=1e-5
    )
    assert (saved.parent / "vocabulary.txt").read_text() == (
        teacher.parent / "vocabulary.txt"
    ).read_text()


def test_bin_export_writes_every_text_format_and_measures_serve_text(corpus, reference, tmp_path):
    out = tmp_path / "export"
    report = export_cli.main(
        ["bin/export", f"--model={reference / 'student.keras'}", *DATA, f"--output_dir={out}"]
    )
    student = loading.load_model(str(reference / "student.keras"))
    expected = predict(student, corpus.test[0])
    assert set(report["formats"]) == {"savedmodel", "tflite"}
    assert report["formats"]["savedmodel"]["serve_text"]["agreement"] == 1.0
    assert report["test_examples"] == len(corpus.test_texts) == len(expected)
    from_strings = text_signatures.saved_model_predict_text(
        str(out / "saved_model"), corpus.test_texts
    )
    np.testing.assert_allclose(from_strings, expected, rtol=1e-5, atol=1e-5)
    lite = text_signatures.tflite_predict(str(out / "student.tflite"), corpus.test[0])
    np.testing.assert_allclose(lite, expected, rtol=1e-4, atol=1e-4)
    assert (out / "vocabulary.txt").read_text() == (reference / "vocabulary.txt").read_text()
    with pytest.raises(ValueError, match=r"^--formats: tflite_int8 not available for text"):
        export_cli.main(
            ["bin/export", f"--model={reference / 'student.keras'}", *DATA]
            + [f"--output_dir={tmp_path / 'int8'}", "--formats=tflite,tflite_int8"]
        )


def test_bin_analyze_reads_a_text_teacher_and_student(corpus, teacher, reference, tmp_path):
    results = analyze_cli.main(
        ["bin/analyze", f"--teacher={teacher}", *DATA, f"--output_dir={tmp_path / 'analysis'}"]
        + [f"--student_model={reference / 'student.keras'}", "--analysis_examples=0"]
    )
    model = loading.load_model(str(teacher))
    logits = predict(model, corpus.train[0])
    assert results["examples"] == len(corpus.train[1])
    assert results["teacher_accuracy"] == pytest.approx(
        np.mean(logits.argmax(1) == corpus.train[1])
    )
    # Tang et al.'s Fig. 1: class correlations of the teacher's distributions against the cosine
    # of its classifier's class rows (BERT's head is the Dense layer "logits").
    kernel = np.asarray(model.get_layer("logits").kernel).T
    unit = kernel / np.linalg.norm(kernel, axis=1, keepdims=True)
    cosine = unit @ unit.T
    off = ~np.eye(CLASSES, dtype=bool)
    for t in ("1", "4"):
        correlation = np.corrcoef(softmax(logits, float(t)).T)
        expected = np.corrcoef(correlation[off], cosine[off])[0, 1]
        assert results["class_relationships"]["correlation"][t]["pearson_with_cosine"] == (
            pytest.approx(expected, abs=1e-4)
        )
    assert "gradient_rescaling" in results
    assert os.path.isfile(tmp_path / "analysis" / "gradient_rescaling.png")


def test_tools_refuse_a_text_model_read_at_another_sequence_length(reference, tmp_path):
    with pytest.raises(
        ValueError,
        match=r"^--sequence_length is 16 but model \(.*student\.keras\) reads sequences of "
        r"exactly 12 tokens; pass --sequence_length=12$",
    ):
        calibrate_cli.main(
            ["bin/calibrate", f"--model={reference / 'student.keras'}", *DATA]
            + ["--sequence_length=16", f"--report_dir={tmp_path}"]
        )
