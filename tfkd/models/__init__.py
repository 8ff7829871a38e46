"""Model zoo: CIFAR ResNets, Wide ResNets, VGG, MobileNetV2, small CNNs, MLPs and text
classifiers (compact BERTs, a text CNN; `tfkd.models.text`), by name; GPT-style causal LMs
(`gpt_tiny`, `gpt_small`) through `build_causal_lm` (`tfkd.models.lm`).

    model = tfkd.models.build("resnet20", (32, 32, 3), num_classes=100, mean=..., variance=...)

Every model normalises its own input (first layer "normalization"), returns logits, and names
its last feature map "features", the pooled vector "pooled" and the last Dense "classifier".
"""

# Imported for their registrations.
from tfkd.models import cnn, mlp, mobilenetv2, resnet, text, vgg, wrn  # noqa: F401
from tfkd.models.base import (
    CLASSIFIER,
    FEATURES,
    MODELS,
    NORMALIZATION,
    POOLED,
    Architecture,
    build,
    feature_extractor,
    head,
    names,
)
from tfkd.models.lm import CAUSAL_LMS, build_causal_lm, causal_lm_names, load_causal_lm
from tfkd.models.text import TEXT_MODELS, is_text_model

__all__ = [
    "MODELS",
    "Architecture",
    "build",
    "names",
    "head",
    "feature_extractor",
    "FEATURES",
    "POOLED",
    "CLASSIFIER",
    "NORMALIZATION",
    "TEXT_MODELS",
    "is_text_model",
    "CAUSAL_LMS",
    "build_causal_lm",
    "causal_lm_names",
    "load_causal_lm",
]
