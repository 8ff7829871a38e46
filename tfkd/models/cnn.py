"""Small plain CNNs (conv-BN-ReLU stacks) for quick experiments on 28x28 grey-scale images."""

import functools

import keras

from tfkd.models.layers import batch_norm, conv2d, pool_and_classify
from tfkd.models.zoo import FEATURES, MODELS, Architecture


def cnn_body(x, num_classes, initializers, widths):
    """Normalised images [batch, H, W, C] -> logits; 2x2 max-pooling follows every conv but the
    last, so the feature map is [batch, H / 2^(len(widths)-1), ..., widths[-1]]."""
    for index, filters in enumerate(widths):
        last = index == len(widths) - 1
        x = conv2d(filters, 3, initializers, f"conv{index}")(x)
        x = batch_norm(f"conv{index}_bn")(x)
        x = keras.layers.ReLU(name=FEATURES if last else f"conv{index}_relu")(x)
        if not last:
            x = keras.layers.MaxPooling2D(2, name=f"conv{index}_pool")(x)
    return pool_and_classify(x, num_classes, initializers)


for _name, _widths in (("cnn_small", (16, 32)), ("cnn_large", (64, 128, 256))):
    MODELS.register(_name, Architecture(functools.partial(cnn_body, widths=_widths), input_rank=3))
