"""Layer helpers shared by the model definitions."""

import keras
import tensorflow as tf

from tfkd.models.zoo import CLASSIFIER, POOLED


def conv2d(filters, kernel_size, initializers, name, strides=1, use_bias=False):
    """A 'same'-padded Conv2D with a He-normal kernel; bias off because a BatchNorm follows."""
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=use_bias,
        kernel_initializer=initializers.he_normal(),
        name=name,
    )


def batch_norm(name):
    """BatchNormalization with PyTorch's defaults (running-average momentum 0.1, eps 1e-5),
    matching the reference CIFAR training recipes.

    Built under a strategy with more than one replica in sync, the layer is synchronised: its
    batch statistics are those of the global batch, so 2 replicas take the step 1 replica takes
    on the same global batch. Built otherwise it keeps the plain single-device statistics
    (`tf.nn.moments`); the synchronised layer computes E[x^2] - E[x]^2 even on one replica.
    """
    synchronized = tf.distribute.get_strategy().num_replicas_in_sync > 1
    return keras.layers.BatchNormalization(
        momentum=0.9, epsilon=1e-5, synchronized=synchronized, name=name
    )


def pool_and_classify(features, num_classes, initializers):
    """[batch, height, width, channels] feature map -> [batch, num_classes] logits.

    Global average pooling (not a fixed window) lets one definition serve 28x28 and 32x32 inputs.
    """
    pooled = keras.layers.GlobalAveragePooling2D(name=POOLED)(features)
    return keras.layers.Dense(
        num_classes,
        kernel_initializer=initializers.glorot_uniform(),
        dtype="float32",
        name=CLASSIFIER,
    )(pooled)
