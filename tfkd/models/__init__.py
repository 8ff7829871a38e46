"""Model zoo: CIFAR ResNets, Wide ResNets, VGG, MobileNetV2, small CNNs, MLPs and text
classifiers (compact BERTs, a text CNN; `tfkd.models.text_classifiers`), by name; GPT-style causal LMs
(`gpt_tiny`, `gpt_small`) through `build_causal_lm` (`tfkd.models.gpt`).

    model = tfkd.models.build("resnet20", (32, 32, 3), num_classes=100, mean=..., variance=...)

Every model normalises its own input (first layer "normalization"), returns logits, and names
its last feature map "features", the pooled vector "pooled" and the last Dense "classifier".
"""

# Imported for their registrations.
from tfkd.models import (  # noqa: F401
    cnn,
    mlp,
    mobilenetv2,
    resnet,
    text_classifiers,  # noqa: F401
    vgg,
    wrn,
)
from tfkd.models.gpt import CAUSAL_LMS, build_causal_lm, causal_lm_names, load_causal_lm
from tfkd.models.text_classifiers import TEXT_MODELS, is_text_model
from tfkd.models.zoo import (
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
