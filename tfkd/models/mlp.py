"""Multi-layer perceptrons for vector inputs: Dense+ReLU hidden layers, then the classifier."""

import functools

import keras

from tfkd.models.zoo import CLASSIFIER, FEATURES, MODELS, POOLED, Architecture


def mlp_body(x, num_classes, initializers, hidden_sizes):
    """Normalised vectors [batch, features] -> logits [batch, num_classes].

    The last hidden activation, [batch, hidden_sizes[-1]], is the layer named "features"; "pooled"
    is an identity so that MLPs share the features -> pooled -> classifier tail of the conv models.
    """
    for index, units in enumerate(hidden_sizes):
        last = index == len(hidden_sizes) - 1
        x = keras.layers.Dense(
            units,
            activation="relu",
            kernel_initializer=initializers.he_normal(),
            name=FEATURES if last else f"hidden{index}",
        )(x)
    x = keras.layers.Identity(name=POOLED)(x)
    return keras.layers.Dense(
        num_classes,
        kernel_initializer=initializers.glorot_uniform(),
        dtype="float32",
        name=CLASSIFIER,
    )(x)


for _name, _sizes in (("mlp_small", (64,)), ("mlp", (256, 256)), ("mlp_large", (512, 512))):
    MODELS.register(
        _name, Architecture(functools.partial(mlp_body, hidden_sizes=_sizes), input_rank=1)
    )
