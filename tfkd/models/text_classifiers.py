"""Text classifiers by name: Turc et al.'s compact BERTs as KerasHub classifiers, and a text CNN.

    model = tfkd.models.build("bert_tiny", (128,), num_classes=2, vocabulary_size=8192)

Every text model takes the KerasHub dict inputs, each int32 [batch, sequence_length]:
`token_ids` (0 is padding), `padding_mask` (1 for real tokens) and `segment_ids` (0 for a
single sentence), and returns logits [batch, num_classes]. They are built from configurations
only (no preset is downloaded) and without a preprocessor: tokenization is `tfkd.data.text`'s
job, so teacher and student read the same token ids.

References:
  Turc, Chang, Lee, Toutanova. "Well-Read Students Learn Better: On the Importance of
  Pre-training Compact Models", 2019 (the BERT-Tiny/Mini/Small sizes).
  Kim. "Convolutional Neural Networks for Sentence Classification", EMNLP 2014 (text CNN).
"""

import dataclasses

import keras

from tfkd.models.zoo import CLASSIFIER, POOLED, Initializers
from tfkd.registry import Registry

# Their own registry: the image and vector zoo (`MODELS`) keeps its (input_shape, mean,
# variance) contract; `tfkd.models.build` serves both.
TEXT_MODELS = Registry("text model")

TOKEN_IDS, PADDING_MASK, SEGMENT_IDS = "token_ids", "padding_mask", "segment_ids"
INPUT_NAMES = (TOKEN_IDS, PADDING_MASK, SEGMENT_IDS)
# Turc et al.'s attention heads are hidden / 64 and the feed-forward width 4 * hidden.
HEAD_SIZE, FEEDFORWARD_RATIO = 64, 4


def is_text_model(model):
    """True for a model whose inputs are the dict of token ids, padding mask and segment ids."""
    inputs = getattr(model, "input", None)
    return isinstance(inputs, dict) and TOKEN_IDS in inputs


@dataclasses.dataclass(frozen=True)
class TextArchitecture:
    """A registered text model: `build_text(vocabulary_size, sequence_length, num_classes,
    initializers) -> keras.Model` on the dict inputs of this module."""

    build_text: object
    input_rank: int = 1


def bert_classifier(
    vocabulary_size, sequence_length, num_classes, initializers, num_layers, hidden_dim, dropout=0.1
):
    """A `keras_hub.models.BertTextClassifier` with Turc et al.'s head and feed-forward sizes;
    its position embedding covers `sequence_length` positions."""
    import keras_hub  # imported here: the image zoo does not pay for it

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=vocabulary_size,
        num_layers=num_layers,
        num_heads=max(hidden_dim // HEAD_SIZE, 1),
        hidden_dim=hidden_dim,
        intermediate_dim=FEEDFORWARD_RATIO * hidden_dim,
        dropout=dropout,
        max_sequence_length=sequence_length,
    )
    classifier = keras_hub.models.BertTextClassifier(
        backbone=backbone, num_classes=num_classes, preprocessor=None, dropout=dropout
    )
    # Logits in float32 under any precision, as for every zoo model: KerasHub's head computes
    # in the backbone's policy (bfloat16 under mixed_bfloat16), and losses want float32.
    classifier.output_dense.dtype_policy = "float32"
    return classifier


@keras.saving.register_keras_serializable(package="tfkd")
class MaskedGlobalMaxPooling1D(keras.layers.Layer):
    """Maximum over time of [batch, time, channels] at positions where the mask is 1.

    A padded position never wins the maximum, so a sequence scores the same whatever its
    padding length.
    """

    def call(self, values, mask):
        mask = keras.ops.cast(mask, "bool")[..., None]
        lowest = keras.ops.convert_to_tensor(-1e9, values.dtype)
        return keras.ops.max(keras.ops.where(mask, values, lowest), axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


def _embedding_initializer(initializers):
    """Keras' Embedding default (uniform in [-0.05, 0.05]), seeded like the kernels."""
    if initializers._seed is None:
        return "uniform"
    return keras.initializers.RandomUniform(-0.05, 0.05, seed=initializers._next_seed())


def text_cnn(
    vocabulary_size,
    sequence_length,
    num_classes,
    initializers,
    embedding_dim=64,
    filters=128,
    kernel_size=3,
):
    """Kim's text CNN with one kernel size: token plus segment embeddings -> Conv1D (ReLU,
    "same" padding) -> maximum over the real tokens -> Dense logits."""
    inputs = {
        name: keras.Input((sequence_length,), dtype="int32", name=name) for name in INPUT_NAMES
    }
    tokens = keras.layers.Embedding(
        vocabulary_size,
        embedding_dim,
        embeddings_initializer=_embedding_initializer(initializers),
        name="token_embedding",
    )(inputs[TOKEN_IDS])
    segments = keras.layers.Embedding(
        2,
        embedding_dim,
        embeddings_initializer=_embedding_initializer(initializers),
        name="segment_embedding",
    )(inputs[SEGMENT_IDS])
    x = keras.layers.Add(name="embeddings")([tokens, segments])
    x = keras.layers.Conv1D(
        filters,
        kernel_size,
        padding="same",
        activation="relu",
        kernel_initializer=initializers.he_normal(),
        name="features",
    )(x)
    pooled = MaskedGlobalMaxPooling1D(name=POOLED)(x, inputs[PADDING_MASK])
    logits = keras.layers.Dense(
        num_classes,
        kernel_initializer=initializers.glorot_uniform(),
        dtype="float32",  # float32 logits under any precision, as for every zoo model
        name=CLASSIFIER,
    )(pooled)
    return keras.Model(inputs, logits, name="text_cnn")


def build_text(architecture, input_shape, num_classes, vocabulary_size, seed=None, name=None):
    """Builds a registered text model for sequences of `input_shape == (sequence_length,)`.

    A `seed` seeds the text CNN's kernels; BERT's initialisers draw from Keras' global seed
    (`keras.utils.set_random_seed`).
    """
    input_shape = tuple(input_shape)
    if len(input_shape) != 1 or input_shape[0] is None or input_shape[0] < 2:
        raise ValueError(
            f"input_shape for text model {name!r} must be (sequence_length,) with "
            f"sequence_length >= 2; got {input_shape}"
        )
    if not isinstance(vocabulary_size, int) or vocabulary_size < 2:
        raise ValueError(
            f"text model {name!r} needs vocabulary_size, an integer >= 2 (the "
            f"tokenizer's); got {vocabulary_size!r}"
        )
    return architecture.build_text(
        vocabulary_size, int(input_shape[0]), int(num_classes), Initializers(seed)
    )


# Turc et al.'s compact BERTs: (layers, hidden size).
BERT_SIZES = {"bert_tiny": (2, 128), "bert_mini": (4, 256), "bert_small": (4, 512)}

for _name, (_layers, _hidden) in BERT_SIZES.items():
    TEXT_MODELS.register(
        _name,
        TextArchitecture(
            lambda vocabulary, length, classes, initializers, layers=_layers, hidden=_hidden: (
                bert_classifier(vocabulary, length, classes, initializers, layers, hidden)
            )
        ),
    )
TEXT_MODELS.register("text_cnn", TextArchitecture(text_cnn))


def sequence_lengths(model):
    """(the fixed number of tokens a text model reads, or None when any number up to the
    longest fits; the longest, or None when unbounded)."""
    fixed = model.input[TOKEN_IDS].shape[1]
    backbone = getattr(model, "backbone", None)
    longest = getattr(backbone, "max_sequence_length", None) or fixed
    return (None if fixed is None else int(fixed)), (None if longest is None else int(longest))


def classifier_layer_name(model, name):
    """`name` when `model` has a layer of that name; otherwise the name of a KerasHub
    classifier's head (its `output_dense`, "logits" for BERT), or `name` when it has none."""
    if any(layer.name == name for layer in model.layers):
        return name
    head = getattr(model, "output_dense", None)
    return name if head is None else head.name
