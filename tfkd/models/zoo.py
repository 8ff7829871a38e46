"""The model registry, `build`, and views of a built model cut at its stable layer names.

Every registered model is a functional `keras.Model` laid out as

    input -> "normalization" -> body ... -> "features" -> "pooled" -> "classifier" (logits)

so distillers can reach the last feature map, the pooled vector and the logits by name alone,
including on a model reloaded from a `.keras` file.
"""

import dataclasses
from typing import Callable

import keras
import numpy as np

from tfkd.registry import Registry

MODELS = Registry("model")

FEATURES = "features"
POOLED = "pooled"
CLASSIFIER = "classifier"
NORMALIZATION = "normalization"


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A registered model family member.

    Attributes:
        body: `body(x, num_classes, initializers) -> logits`, where `x` is the normalised input
            tensor and the returned tensor comes out of a Dense layer named "classifier" that
            follows layers named "features" and "pooled".
        input_rank: rank of one example (3 for HxWxC images, 1 for vectors).
    """

    body: Callable
    input_rank: int


class Initializers:
    """Hands out kernel initialisers, each with its own seed when a base seed is given.

    A Keras initialiser built with an integer seed returns the same tensor on every call, so one
    seeded instance shared by all layers would give equally shaped layers identical weights;
    counting up from the base seed keeps a seeded model reproducible without that.
    Without a seed the built-in names are returned and Keras' global RNG decides.
    """

    def __init__(self, seed=None):
        self._seed = seed
        self._count = 0

    def _next_seed(self):
        self._count += 1
        return self._seed + self._count

    def he_normal(self):
        """He-normal initialiser, for kernels followed by a ReLU (convolutions, hidden Dense)."""
        if self._seed is None:
            return "he_normal"
        return keras.initializers.HeNormal(seed=self._next_seed())

    def glorot_uniform(self):
        """Glorot-uniform initialiser (the Keras Dense default), for classifier kernels."""
        if self._seed is None:
            return "glorot_uniform"
        return keras.initializers.GlorotUniform(seed=self._next_seed())


def _channel_statistic(argument, values, channels, default):
    """`values` as a float32 [channels] array, or `default` repeated when `values` is None."""
    if values is None:
        return np.full(channels, default, "float32")
    array = np.asarray(values, dtype="float32")
    if array.shape != (channels,):
        raise ValueError(
            f"{argument} must have shape ({channels},), one value per input "
            f"channel; got shape {array.shape}"
        )
    return array


def build(
    name, input_shape, num_classes, mean=None, variance=None, seed=None, vocabulary_size=None
):
    """Builds the registered model `name`, returning logits of shape [batch, num_classes].

    Args:
        name: a registered model name (see `names()`).
        input_shape: shape of one example without the batch axis: (height, width, channels) for
            convolutional models, (features,) for MLPs. Images are expected in [0, 1].
        num_classes: number of output logits, at least 2.
        mean: per-channel (last axis) means, shape [channels], subtracted by the first layer;
            None means no shift.
        variance: per-channel variances, shape [channels]; None means no scaling.
        seed: optional integer; when given every kernel initialiser is seeded from it, so two
            builds with the same seed have identical weights. The global Keras seed is not
            touched.
        vocabulary_size: text models only (`tfkd.models.text_classifiers`): the tokenizer's vocabulary
            size; their input_shape is (sequence_length,) and mean and variance are unused.

    Returns:
        A functional `keras.Model` mapping float32 [batch, *input_shape] to float32 logits
        [batch, num_classes], with layers named "normalization", "features", "pooled" and
        "classifier". Built inside the scope of a strategy with more than one replica in sync,
        its BatchNormalization layers are synchronised (statistics of the global batch), so a
        step on N replicas is the step on one; the setting is saved with the model.
    """
    from tfkd.models.text_classifiers import TEXT_MODELS, build_text

    if name in TEXT_MODELS:
        return build_text(
            TEXT_MODELS.get(name), input_shape, num_classes, vocabulary_size, seed, name
        )
    architecture = MODELS.get(name)
    input_shape = tuple(input_shape)
    if len(input_shape) != architecture.input_rank:
        expected = "(height, width, channels)" if architecture.input_rank == 3 else "(features,)"
        raise ValueError(
            f"input_shape for model {name!r} must have rank "
            f"{architecture.input_rank}, i.e. {expected}; got {input_shape}"
        )
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2; got {num_classes!r}")
    channels = input_shape[-1]
    mean = _channel_statistic("mean", mean, channels, default=0.0)
    variance = _channel_statistic("variance", variance, channels, default=1.0)

    inputs = keras.Input(input_shape, dtype="float32", name="inputs")
    x = keras.layers.Normalization(axis=-1, mean=mean, variance=variance, name=NORMALIZATION)(
        inputs
    )
    logits = architecture.body(x, int(num_classes), Initializers(seed))
    return keras.Model(inputs, logits, name=name)


def names():
    """Sorted list of registered model names."""
    return MODELS.names()


def head(model):
    """Maps a "features" tensor to logits with the model's own (shared) pooling and classifier.

    Args:
        model: a model from `build`, or one reloaded from a `.keras` file.

    Returns:
        A `keras.Model` from [batch, *features_shape] (e.g. [batch, 8, 8, 64] for resnet20 on
        32x32 images, [batch, hidden] for an MLP) to logits [batch, num_classes]. Its weights are
        the model's, so training one trains the other.
    """
    features_shape = model.get_layer(FEATURES).output.shape[1:]
    features = keras.Input(features_shape, name="head_features")
    pooled = model.get_layer(POOLED)(features)
    logits = model.get_layer(CLASSIFIER)(pooled)
    return keras.Model(features, logits, name=f"{model.name}_head")


def feature_extractor(model):
    """Returns a model mapping inputs to [features, logits], sharing `model`'s weights.

    Shapes: inputs [batch, *input_shape] -> features [batch, *features_shape] and logits
    [batch, num_classes].
    """
    return keras.Model(
        model.input,
        [model.get_layer(FEATURES).output, model.get_layer(CLASSIFIER).output],
        name=f"{model.name}_feature_extractor",
    )
