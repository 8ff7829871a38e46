"""MobileNetV2 (Sandler et al., 2018) for CIFAR as defined in HobbitLong/RepDistiller
models/mobilenetv2.py, registered as "mobilenetv2" with the reference's `mobile_half` settings:
expansion 6, width multiplier 0.5, a 1280-channel last conv, total stride 16.
"""

import functools

import keras

from tfkd.models.layers import batch_norm, conv2d, pool_and_classify
from tfkd.models.zoo import FEATURES, MODELS, Architecture

# (expansion, output channels, repeats, first stride) per stage, expansion None -> the model's.
_STAGES = (
    (1, 16, 1, 1),
    (None, 24, 2, 1),
    (None, 32, 3, 2),
    (None, 64, 4, 2),
    (None, 96, 3, 1),
    (None, 160, 3, 2),
    (None, 320, 1, 1),
)


def _inverted_residual(x, filters, strides, expansion, initializers, name, output_name):
    """1x1 expand -> 3x3 depthwise -> linear 1x1 project, each with BN; the input is added back
    when the shape is unchanged. The reference expands even when expansion == 1."""
    hidden = x.shape[-1] * expansion
    y = conv2d(hidden, 1, initializers, f"{name}_expand_conv")(x)
    y = keras.layers.ReLU(name=f"{name}_expand_relu")(batch_norm(f"{name}_expand_bn")(y))
    y = keras.layers.DepthwiseConv2D(
        3,
        strides=strides,
        padding="same",
        use_bias=False,
        depthwise_initializer=initializers.he_normal(),
        name=f"{name}_depthwise_conv",
    )(y)
    y = keras.layers.ReLU(name=f"{name}_depthwise_relu")(batch_norm(f"{name}_depthwise_bn")(y))
    y = conv2d(filters, 1, initializers, f"{name}_project_conv")(y)
    if strides == 1 and x.shape[-1] == filters:
        y = batch_norm(f"{name}_project_bn")(y)
        return keras.layers.Add(name=output_name or f"{name}_add")([x, y])
    return batch_norm(output_name or f"{name}_project_bn")(y)


def mobilenetv2_body(x, num_classes, initializers, expansion, width_multiplier):
    """Normalised images [batch, H, W, C] -> logits; the feature map is
    [batch, ceil(H/16), ceil(W/16), 1280]. The last layer of stage i is named "stage{i}"."""
    x = conv2d(int(32 * width_multiplier), 3, initializers, "stem_conv", strides=2)(x)
    x = keras.layers.ReLU(name="stem_relu")(batch_norm("stem_bn")(x))
    for stage, (stage_expansion, channels, repeats, first_stride) in enumerate(_STAGES, start=1):
        for block in range(repeats):
            x = _inverted_residual(
                x,
                int(channels * width_multiplier),
                first_stride if block == 0 else 1,
                stage_expansion or expansion,
                initializers,
                f"stage{stage}_block{block}",
                f"stage{stage}" if block == repeats - 1 else None,
            )
    last_channels = int(1280 * width_multiplier) if width_multiplier > 1.0 else 1280
    x = conv2d(last_channels, 1, initializers, "last_conv")(x)
    x = keras.layers.ReLU(name=FEATURES)(batch_norm("last_bn")(x))
    return pool_and_classify(x, num_classes, initializers)


MODELS.register(
    "mobilenetv2",
    Architecture(
        functools.partial(mobilenetv2_body, expansion=6, width_multiplier=0.5), input_rank=3
    ),
)
