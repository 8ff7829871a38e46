"""KerasHub text classifiers as teacher and student: one Distiller step against NumPy, and the
whole run from csv: and text: data with trained, preset and refused teachers."""

import json
import os
import shutil

import keras
import numpy as np
import pytest

import tfkd
from tfkd.data import text
from tfkd.experiment import RunConfig, run
from tfkd.teacher import loading

LENGTH, VOCABULARY, CLASSES = 8, 50, 3


def bert(hidden, heads, seed):
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCABULARY,
        num_layers=1,
        num_heads=heads,
        hidden_dim=hidden,
        intermediate_dim=2 * hidden,
        dropout=0.0,
        max_sequence_length=LENGTH,
    )
    return keras_hub.models.BertTextClassifier(backbone, CLASSES, preprocessor=None, dropout=0.0)


def softmax(z, temperature=1.0):
    z = np.asarray(z, np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def test_one_distiller_step_on_bert_classifiers_matches_numpy():
    teacher, student = bert(hidden=16, heads=2, seed=1), bert(hidden=8, heads=1, seed=2)
    rng = np.random.default_rng(0)
    token_ids = rng.integers(1, VOCABULARY, (6, LENGTH)).astype("int32")
    token_ids[:3, 5:] = 0  # padded examples
    x = {
        "token_ids": token_ids,
        "padding_mask": (token_ids != 0).astype("int32"),
        "segment_ids": np.zeros_like(token_ids),
    }
    y = rng.integers(0, CLASSES, 6)
    temperature, alpha, learning_rate = 2.0, 0.7, 0.5
    teacher_logits, student_logits = np.asarray(teacher(x)), np.asarray(student(x))
    bias = np.asarray(student.get_layer("logits").bias).copy()

    distiller = tfkd.Distiller(student, teacher, temperature=temperature, alpha=alpha)
    distiller.compile(optimizer=keras.optimizers.SGD(learning_rate))
    logs = distiller.train_on_batch(x, y, return_dict=True)

    # Hinton et al.: (1 - a) CE(y, z_s) + a T^2 KL(softmax(z_t / T) || softmax(z_s / T)),
    # averaged over the batch.
    p_teacher, p_student = (
        softmax(teacher_logits, temperature),
        softmax(student_logits, temperature),
    )
    kl = np.sum(p_teacher * (np.log(p_teacher) - np.log(p_student)), axis=-1)
    cross_entropy = -np.log(softmax(student_logits)[np.arange(6), y])
    expected = np.mean((1 - alpha) * cross_entropy + alpha * temperature**2 * kl)
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)
    # The classifier bias moves by -lr times the mean gradient of the loss in the logits:
    # (1 - a)(softmax(z_s) - onehot(y)) + a T (softmax(z_s / T) - softmax(z_t / T)).
    gradient = (
        (1 - alpha) * (softmax(student_logits) - np.eye(CLASSES)[y])
        + alpha * temperature * (p_student - p_teacher)
    ).mean(axis=0)
    np.testing.assert_allclose(
        np.asarray(student.get_layer("logits").bias),
        bias - learning_rate * gradient,
        rtol=1e-4,
        atol=1e-6,
    )


CORPUS_FLAGS = [
    "--sequence_length=12",
    "--vocabulary_size=120",
    "--validation_fraction=0.2",
    "--epochs=1",
    "--teacher_epochs=1",
    "--batch_size=32",
    "--verbose=0",
    "--seed=0",
    "--overwrite",
]
TEST_ONLY_WORD = "zeppelin"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The same 150 generated texts as a csv: folder and a text: folder; every test text ends
    with a word no training text holds."""
    root = tmp_path_factory.mktemp("corpus")
    texts, labels, names = text.make_text_corpus(
        150, 2, seed=0, style=text.CorpusStyle(length=(6, 10))
    )
    texts = np.array([str(t) for t in texts], object)
    splits = {
        "train": (texts[:120], labels[:120]),
        "test": (np.array([f"{t} {TEST_ONLY_WORD}" for t in texts[120:]], object), labels[120:]),
    }
    table = root / "table"
    table.mkdir()
    for split, (split_texts, split_labels) in splits.items():
        text.write_text_folder(str(root / "folder"), split_texts, split_labels, names, split)
        rows = "".join(f"{t},{names[k]}\n" for t, k in zip(split_texts, split_labels, strict=True))
        (table / f"{split}.csv").write_text("sentence,topic\n" + rows)
    return root


@pytest.fixture(scope="module")
def csv_run(corpus, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("runs") / "csv")
    config = RunConfig.from_flags(
        [
            f"--dataset=csv:{corpus / 'table'}",
            "--text_column=sentence",
            "--label_column=topic",
            "--teacher=bert_tiny",
            "--student=text_cnn",
            "--calibrate_teacher",
            "--teacher_cache=memory",
            "--baseline",
            "--export=keras",
            f"--output_dir={output}",
            *CORPUS_FLAGS,
        ]
    )
    return output, run(config)


def test_run_from_csv_trains_teacher_distils_and_keeps_the_vocabulary(csv_run):
    output, results = csv_run
    for entry in ("teacher", "student", "baseline"):
        assert 0.0 <= results[entry]["accuracy"] <= 1.0
    assert results["teacher"]["arch"] == "bert_tiny" and results["student"]["arch"] == "text_cnn"
    assert results["calibration"]["temperature"] > 0
    with open(os.path.join(output, "vocabulary.txt")) as handle:
        vocabulary = handle.read().split()
    assert vocabulary[:4] == ["[PAD]", "[CLS]", "[SEP]", "[UNK]"]
    assert TEST_ONLY_WORD not in vocabulary  # fitted on the training split only
    student = loading.load_model(os.path.join(output, "student.keras"))
    assert student.get_layer("token_embedding").input_dim == len(vocabulary)
    with open(os.path.join(output, "results.json")) as handle:
        assert json.load(handle)["student"] == results["student"]


def test_run_from_text_folder_with_a_preset_teacher(csv_run, corpus, tmp_path):
    output, results = csv_run
    preset = tmp_path / "preset"
    loading.load_model(os.path.join(output, "teacher.keras")).save_to_preset(str(preset))
    shutil.copy(os.path.join(output, "vocabulary.txt"), preset / "vocabulary.txt")
    config = RunConfig.from_flags(
        [
            f"--dataset=text:{corpus / 'folder'}",
            f"--teacher=preset:{preset}",
            "--student=text_cnn",
            f"--vocabulary={output}/vocabulary.txt",
            "--export=keras",
            f"--output_dir={tmp_path / 'folder_run'}",
            *CORPUS_FLAGS,
        ]
    )
    folder_results = run(config)
    # The same teacher on the same test texts, read from .txt files instead of a table.
    assert folder_results["teacher"]["accuracy"] == pytest.approx(results["teacher"]["accuracy"])
    assert 0.0 <= folder_results["student"]["accuracy"] <= 1.0


def test_teacher_with_another_vocabulary_is_refused(csv_run, corpus, tmp_path):
    output, _ = csv_run
    config = RunConfig.from_flags(
        [
            f"--dataset=text:{corpus / 'folder'}",
            f"--teacher={output}/teacher.keras",
            "--student=text_cnn",
            f"--output_dir={tmp_path / 'refused'}",
            *CORPUS_FLAGS,
            "--vocabulary_size=60",
        ]
    )
    with pytest.raises(
        ValueError,
        match=r"^--teacher .*teacher\.keras: teacher and student must "
        r"share the tokenizer, but the teacher uses the "
        r"wordpiece vocabulary of \d+ tokens \[.*vocabulary\.txt"
        r"\] and the student the wordpiece vocabulary of \d+ "
        r"tokens \[.*fitted on .* training texts\]; pass "
        r"--vocabulary=",
    ):
        run(config)
    assert not os.path.exists(tmp_path / "refused" / "teacher.keras")


def test_text_model_on_image_data_is_refused(tmp_path):
    config = RunConfig.from_flags(
        [
            "--dataset=synthetic",
            "--synthetic_size=200",
            "--student=text_cnn",
            "--teacher=mlp",
            f"--output_dir={tmp_path}",
            "--overwrite",
            "--verbose=0",
        ]
    )
    with pytest.raises(
        ValueError,
        match=r"model 'text_cnn' cannot read --dataset=synthetic, "
        r"which holds images or vectors",
    ):
        run(config)
