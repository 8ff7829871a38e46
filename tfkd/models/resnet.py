"""CIFAR ResNets (He et al., 2016, section 4.2) as defined in HobbitLong/RepDistiller
models/resnet.py: 3x3 stem, three stages of 6n+2-depth basic blocks, global pooling, one Dense.

resnet8 ... resnet110 use widths (16, 16, 32, 64); resnet8x4 and resnet32x4 use (32, 64, 128, 256).
"""

import functools

import keras

from tfkd.models.layers import batch_norm, conv2d, pool_and_classify
from tfkd.models.zoo import FEATURES, MODELS, Architecture


def _basic_block(x, filters, strides, initializers, name, output_name):
    """Two 3x3 conv-BN pairs plus an identity or 1x1 projection shortcut; ReLU after the sum."""
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = conv2d(filters, 1, initializers, f"{name}_shortcut_conv", strides=strides)(x)
        shortcut = batch_norm(f"{name}_shortcut_bn")(shortcut)
    y = conv2d(filters, 3, initializers, f"{name}_conv1", strides=strides)(x)
    y = batch_norm(f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = conv2d(filters, 3, initializers, f"{name}_conv2")(y)
    y = batch_norm(f"{name}_bn2")(y)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=output_name)(y)


def resnet_body(x, num_classes, initializers, depth, widths):
    """Normalised images [batch, H, W, C] -> logits; the feature map is
    [batch, H/4, W/4, widths[3]].

    Each stage ends in a ReLU named "stage1", "stage2" and, for the last one, "features".
    """
    if (depth - 2) % 6 != 0:
        raise ValueError(f"depth must be 6n+2 for a CIFAR ResNet; got {depth}")
    blocks_per_stage = (depth - 2) // 6
    x = conv2d(widths[0], 3, initializers, "stem_conv")(x)
    x = batch_norm("stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for stage, filters in enumerate(widths[1:], start=1):
        for block in range(blocks_per_stage):
            strides = 2 if stage > 1 and block == 0 else 1
            last = block == blocks_per_stage - 1
            output_name = (FEATURES if stage == 3 else f"stage{stage}") if last else None
            x = _basic_block(
                x,
                filters,
                strides,
                initializers,
                f"stage{stage}_block{block}",
                output_name or f"stage{stage}_block{block}_relu2",
            )
    return pool_and_classify(x, num_classes, initializers)


_NARROW = (16, 16, 32, 64)
_WIDE = (32, 64, 128, 256)
for _depth in (8, 14, 20, 32, 44, 56, 110):
    MODELS.register(
        f"resnet{_depth}",
        Architecture(functools.partial(resnet_body, depth=_depth, widths=_NARROW), input_rank=3),
    )
MODELS.register(
    "resnet8x4", Architecture(functools.partial(resnet_body, depth=8, widths=_WIDE), input_rank=3)
)
MODELS.register(
    "resnet32x4", Architecture(functools.partial(resnet_body, depth=32, widths=_WIDE), input_rank=3)
)
