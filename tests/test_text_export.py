"""Text students exported to .keras, SavedModel (token ids and raw strings) and LiteRT agree with
the Keras model on a tiny test split."""

import json
import os

import keras
import numpy as np
import pytest

from tfkd import models
from tfkd.data import text, tokenizers
from tfkd.data.tokenizers import text_inputs
from tfkd.exporting import student as export
from tfkd.exporting import text_signatures as export_text
from tfkd.teacher import loading

LENGTH, CLASSES = 12, 3


@pytest.fixture(scope="module")
def corpus():
    texts, labels, _ = text.make_text_corpus(
        40, CLASSES, seed=1, style=text.CorpusStyle(length=(4, 14))
    )
    tokenizer = tokenizers.make_tokenizer("wordpiece", LENGTH, texts[:30], 100)
    return tokenizer, texts[30:], tokenizer.encode(texts[30:]), labels[30:]


def tiny_bert(vocabulary_size):
    import keras_hub

    keras.utils.set_random_seed(4)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=vocabulary_size,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        dropout=0.0,
        max_sequence_length=LENGTH,
    )
    return keras_hub.models.BertTextClassifier(backbone, CLASSES, preprocessor=None, dropout=0.0)


@pytest.mark.parametrize("kind", ["text_cnn", "bert"])
def test_text_student_exports_agree_with_keras(kind, corpus, tmp_path):
    tokenizer, texts, token_ids, labels = corpus
    student = (
        models.build(
            "text_cnn", (LENGTH,), CLASSES, vocabulary_size=tokenizer.vocabulary_size, seed=0
        )
        if kind == "text_cnn"
        else tiny_bert(tokenizer.vocabulary_size)
    )
    exports = export.export_student(
        student,
        str(tmp_path),
        ("keras", "savedmodel", "tflite"),
        test_data=(token_ids, labels),
        tokenizer=tokenizer,
        settings=export.ExportSettings(verbose=False),
    )
    assert {"keras", "savedmodel", "tflite", "report"} <= set(exports)
    reference = np.asarray(student(text_inputs(token_ids)))

    keras_file = loading.load_model(str(tmp_path / exports["keras"]))
    np.testing.assert_allclose(
        np.asarray(keras_file(text_inputs(token_ids))), reference, rtol=1e-5, atol=1e-5
    )
    saved = export_text.saved_model_predict(str(tmp_path / exports["savedmodel"]), token_ids)
    np.testing.assert_allclose(saved, reference, rtol=1e-5, atol=1e-5)
    # serve_text tokenizes raw strings inside the SavedModel exactly as the data pipeline did.
    from_strings = export_text.saved_model_predict_text(
        str(tmp_path / exports["savedmodel"]), texts
    )
    np.testing.assert_allclose(from_strings, reference, rtol=1e-5, atol=1e-5)
    lite = export_text.tflite_predict(str(tmp_path / exports["tflite"]), token_ids)
    np.testing.assert_allclose(lite, reference, rtol=1e-4, atol=1e-4)
    assert np.all(np.isfinite(lite))

    with open(tmp_path / "export_report.json") as handle:
        report = json.load(handle)
    assert report["test_examples"] == len(labels)
    for name in ("savedmodel", "tflite"):
        entry = report["formats"][name]
        assert entry["agreement"] == 1.0 and entry["max_abs_logit_diff"] < 1e-4
    with_texts = export_text.build_report(
        student, str(tmp_path), exports, (token_ids, labels), texts
    )
    assert with_texts["formats"]["savedmodel"]["serve_text"]["agreement"] == 1.0
    assert os.path.isfile(tmp_path / "export_report.md")


def test_quantised_formats_are_refused_for_text(corpus, tmp_path):
    tokenizer = corpus[0]
    student = models.build(
        "text_cnn", (LENGTH,), CLASSES, vocabulary_size=tokenizer.vocabulary_size, seed=0
    )
    with pytest.raises(ValueError, match=r"^--export: tflite_int8 not available for text models"):
        export.export_student(
            student,
            str(tmp_path),
            ("keras", "tflite_int8"),
            settings=export.ExportSettings(verbose=False),
        )
