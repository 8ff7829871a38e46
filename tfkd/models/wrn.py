"""Wide ResNets (Zagoruyko & Komodakis, 2016) as defined in HobbitLong/RepDistiller models/wrn.py:
pre-activation basic blocks, widths (16, 16k, 32k, 64k), depth 6n+4, no dropout.
"""

import functools

import keras

from tfkd.models.layers import batch_norm, conv2d, pool_and_classify
from tfkd.models.zoo import FEATURES, MODELS, Architecture


def _preactivation_block(x, filters, strides, initializers, name):
    """BN-ReLU-conv3x3 twice; when the width or stride changes, the 1x1 shortcut reads the
    pre-activated input (as in the reference), otherwise the raw input is added back."""
    same_shape = x.shape[-1] == filters
    activated = keras.layers.ReLU(name=f"{name}_relu1")(batch_norm(f"{name}_bn1")(x))
    if same_shape:
        shortcut = x
    else:
        shortcut = conv2d(filters, 1, initializers, f"{name}_shortcut_conv", strides=strides)(
            activated
        )
    y = conv2d(filters, 3, initializers, f"{name}_conv1", strides=strides)(activated)
    y = keras.layers.ReLU(name=f"{name}_relu2")(batch_norm(f"{name}_bn2")(y))
    y = conv2d(filters, 3, initializers, f"{name}_conv2")(y)
    return keras.layers.Add(name=f"{name}_add")([y, shortcut])


def wrn_body(x, num_classes, initializers, depth, widen_factor):
    """Normalised images [batch, H, W, C] -> logits; the feature map ("features", the final
    BN-ReLU) is [batch, H/4, W/4, 64 * widen_factor]. Stage outputs are named "stage1".."stage3"
    (pre-activation sums, before that final BN-ReLU)."""
    if (depth - 4) % 6 != 0:
        raise ValueError(f"depth must be 6n+4 for a Wide ResNet; got {depth}")
    blocks_per_stage = (depth - 4) // 6
    x = conv2d(16, 3, initializers, "stem_conv")(x)
    for stage, base_width in enumerate((16, 32, 64), start=1):
        for block in range(blocks_per_stage):
            strides = 2 if stage > 1 and block == 0 else 1
            x = _preactivation_block(
                x, base_width * widen_factor, strides, initializers, f"stage{stage}_block{block}"
            )
        x = keras.layers.Identity(name=f"stage{stage}")(x)
    x = batch_norm("final_bn")(x)
    x = keras.layers.ReLU(name=FEATURES)(x)
    return pool_and_classify(x, num_classes, initializers)


for _depth, _widen in ((16, 1), (16, 2), (40, 1), (40, 2)):
    MODELS.register(
        f"wrn_{_depth}_{_widen}",
        Architecture(functools.partial(wrn_body, depth=_depth, widen_factor=_widen), input_rank=3),
    )
