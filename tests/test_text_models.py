"""The text zoo: compact BERTs and the text CNN, built from configurations with no download."""

import numpy as np
import pytest

from tfkd import models
from tfkd.exporting import student as export
from tfkd.models.text_classifiers import BERT_SIZES, MaskedGlobalMaxPooling1D
from tfkd.teacher import loading

VOCABULARY, LENGTH, CLASSES = 100, 12, 3


def bert_parameters(vocabulary, length, classes, layers, hidden):
    """Devlin et al.'s BERT counted by hand with Turc et al.'s sizes (heads of 64, feed-forward
    4 * hidden): token, position and 2 segment embeddings with a layer norm; per layer four
    hidden x hidden projections with biases, two layer norms and the feed-forward pair; the
    pooler and the classifier."""
    intermediate = 4 * hidden
    embeddings = vocabulary * hidden + length * hidden + 2 * hidden + 2 * hidden
    attention = 4 * (hidden * hidden + hidden)
    feedforward = hidden * intermediate + intermediate + intermediate * hidden + hidden
    layer = attention + feedforward + 2 * (2 * hidden)
    pooler = hidden * hidden + hidden
    return embeddings + layers * layer + pooler + hidden * classes + classes


def inputs(batch=2, seed=0, length=LENGTH):
    rng = np.random.default_rng(seed)
    token_ids = rng.integers(1, VOCABULARY, (batch, length)).astype("int32")
    token_ids[:, length - 3 :] = 0
    return {
        "token_ids": token_ids,
        "padding_mask": (token_ids != 0).astype("int32"),
        "segment_ids": np.zeros_like(token_ids),
    }


def test_text_models_are_registered_apart_from_the_image_zoo():
    assert set(models.TEXT_MODELS.names()) == {"bert_tiny", "bert_mini", "bert_small", "text_cnn"}
    assert not set(models.TEXT_MODELS.names()) & set(models.names())


@pytest.mark.parametrize("name", sorted(BERT_SIZES))
def test_bert_sizes_match_hand_counted_parameters(name):
    layers, hidden = {"bert_tiny": (2, 128), "bert_mini": (4, 256), "bert_small": (4, 512)}[name]
    model = models.build(name, (LENGTH,), CLASSES, vocabulary_size=VOCABULARY)
    assert model.count_params() == bert_parameters(VOCABULARY, LENGTH, CLASSES, layers, hidden)
    backbone = model.backbone
    assert (
        backbone.num_layers,
        backbone.hidden_dim,
        backbone.num_heads,
        backbone.intermediate_dim,
    ) == (layers, hidden, hidden // 64, 4 * hidden)
    assert model.preprocessor is None
    assert models.is_text_model(model)


def test_bert_tiny_has_4_4_million_parameters_with_bert_vocabulary():
    # Turc et al. list BERT-Tiny at 4.4M parameters with the 30,522-token uncased vocabulary.
    model = models.build("bert_tiny", (512,), 2, vocabulary_size=30522)
    assert round(model.count_params() / 1e6, 1) == 4.4


def test_text_cnn_parameters_and_padding_invariance():
    model = models.build("text_cnn", (LENGTH,), CLASSES, vocabulary_size=VOCABULARY, seed=0)
    embedding, filters, kernel = 64, 128, 3
    expected = (
        VOCABULARY * embedding
        + 2 * embedding
        + kernel * embedding * filters
        + filters
        + filters * CLASSES
        + CLASSES
    )
    assert model.count_params() == expected
    batch = inputs()
    logits = np.asarray(model(batch))
    assert logits.shape == (2, CLASSES)
    # Changing what sits under the padding leaves the logits alone...
    changed = {key: value.copy() for key, value in batch.items()}
    changed["token_ids"][:, -1] = 7
    np.testing.assert_allclose(np.asarray(model(changed)), logits, rtol=1e-6, atol=1e-6)
    # ...and the seeded build is repeatable.
    again = models.build("text_cnn", (LENGTH,), CLASSES, vocabulary_size=VOCABULARY, seed=0)
    np.testing.assert_allclose(np.asarray(again(batch)), logits, rtol=1e-6)


def test_masked_max_pooling_matches_numpy():
    values = np.random.default_rng(1).normal(size=(2, 5, 3)).astype("float32")
    mask = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], "int32")
    expected = np.stack([values[b][mask[b] == 1].max(axis=0) for b in range(2)])
    np.testing.assert_allclose(np.asarray(MaskedGlobalMaxPooling1D()(values, mask)), expected)


@pytest.mark.parametrize("name", ["bert_tiny", "text_cnn"])
def test_text_models_round_trip_through_keras_files(name, tmp_path):
    model = models.build(name, (LENGTH,), CLASSES, vocabulary_size=VOCABULARY, seed=0)
    path = str(tmp_path / "model.keras")
    export.save_keras(model, path)
    loaded = loading.load_model(path)
    batch = inputs(seed=3)
    np.testing.assert_allclose(
        np.asarray(loaded(batch)), np.asarray(model(batch)), rtol=1e-5, atol=1e-5
    )


def test_bad_text_model_arguments_are_refused():
    with pytest.raises(ValueError, match="needs vocabulary_size"):
        models.build("bert_tiny", (LENGTH,), CLASSES)
    with pytest.raises(ValueError, match=r"sequence_length >= 2"):
        models.build("text_cnn", (1,), CLASSES, vocabulary_size=VOCABULARY)
