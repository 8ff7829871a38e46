"""Partial distillation's names in their homes by layer, importable from one place: the targets
(`tfkd.targets.partial`), the methods (`tfkd.distillers.partial`), the classifier weights
(`tfkd.models.introspection`) and the super-class maps (`tfkd.data.superclass`)."""
from tfkd.data.superclass import read_superclass_map, superclass_map  # noqa: F401
from tfkd.distillers.partial import (CLASSIFIER_LAYER, EPSILON, GAMMA, P_GT,  # noqa: F401
                                     P_OTHER, P_SAME, SIM_BETA, SIM_OPTIONS, SIM_TEMPERATURE,
                                     SUPERCLASS_MAP, TOPK)
from tfkd.models.introspection import classifier_weights, find_layer  # noqa: F401
from tfkd.targets.partial import (TARGET_CLASSES, LabelSmoothingTarget,  # noqa: F401
                                  PtSimTarget, PtTarget, RelTarget, SimTarget, TopkTarget)
