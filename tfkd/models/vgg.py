"""CIFAR VGG with batch norm, as defined in HobbitLong/RepDistiller models/vgg.py (the "_bn"
variants, which the CRD tables call vgg8/vgg13): five conv groups, 2x2 max-pooling after each of the
first three, no fully connected layers before the single classifier.
"""

import functools

import keras

from tfkd.models.layers import batch_norm, conv2d, pool_and_classify
from tfkd.models.zoo import FEATURES, MODELS, Architecture

_CONFIGS = {
    "vgg8": ((64,), (128,), (256,), (512,), (512,)),
    "vgg13": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
}


def vgg_body(x, num_classes, initializers, groups):
    """Normalised images [batch, H, W, C] -> logits; the feature map is
    [batch, H/8, W/8, 512] for H, W <= 32 (floor division at each pooling).

    The reference pools a fourth time only for 64x64 inputs; this version pools after
    group 3 only when the map is still larger than 4x4, which gives the reference layout for
    32x32 and 64x64 inputs and keeps small inputs such as 28x28 from shrinking to nothing.
    """
    for group_index, widths in enumerate(groups):
        for conv_index, filters in enumerate(widths):
            name = f"group{group_index}_conv{conv_index}"
            # Convs keep their bias here, as in the reference, even though a BN follows.
            x = conv2d(filters, 3, initializers, name, use_bias=True)(x)
            x = batch_norm(f"{name}_bn")(x)
            last = group_index == len(groups) - 1 and conv_index == len(widths) - 1
            x = keras.layers.ReLU(name=FEATURES if last else f"{name}_relu")(x)
        if group_index < 3 or (group_index == 3 and x.shape[1] is not None and x.shape[1] > 4):
            x = keras.layers.MaxPooling2D(2, name=f"group{group_index}_pool")(x)
    return pool_and_classify(x, num_classes, initializers)


for _name in ("vgg8", "vgg13"):
    MODELS.register(
        _name, Architecture(functools.partial(vgg_body, groups=_CONFIGS[_name]), input_rank=3)
    )
