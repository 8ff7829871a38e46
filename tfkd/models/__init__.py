"""Model zoo: CIFAR ResNets, Wide ResNets, VGG, MobileNetV2, small CNNs and MLPs, by name.

    model = tfkd.models.build("resnet20", (32, 32, 3), num_classes=100, mean=..., variance=...)

Every model normalises its own input (first layer "normalization"), returns logits, and names
its last feature map "features", the pooled vector "pooled" and the last Dense "classifier".
"""
from tfkd.models.base import (CLASSIFIER, FEATURES, MODELS, NORMALIZATION, POOLED, Architecture,
                              build, feature_extractor, head, names)
# Imported for their registrations.
from tfkd.models import cnn, mlp, mobilenetv2, resnet, vgg, wrn  # noqa: F401

__all__ = ["MODELS", "Architecture", "build", "names", "head", "feature_extractor",
           "FEATURES", "POOLED", "CLASSIFIER", "NORMALIZATION"]
