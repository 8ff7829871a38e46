"""Teacher-target transforms: teacher logits [..., K] (and labels [...]) -> target
distribution [..., K].

`build_target(name, **options)` builds any registered transform; importing this package
registers them all (temperature, calibrated, label_smoothing, kd_pt, kd_sim, kd_pt_sim, kd_topk,
kd_rel). The partial targets' pure functions are `tfkd.targets.hand_crafted`; `standardize_logits` is
the logit standardization applied to teacher and student logits alike.
"""

from tfkd.targets.calibrated import CALIBRATION_MODES, CalibratedSoftmax
from tfkd.targets.catalog import TARGETS, TemperatureSoftmax, build_target
from tfkd.targets.hand_crafted import (
    kd_pt,
    kd_pt_sim,
    kd_rel,
    kd_sim,
    kd_topk,
    label_smoothing,
)
from tfkd.targets.partial import (
    TARGET_CLASSES,
    LabelSmoothingTarget,
    PtSimTarget,
    PtTarget,
    RelTarget,
    SimTarget,
    TopkTarget,
)
from tfkd.targets.standardized import standardize_logits

__all__ = [
    "CALIBRATION_MODES",
    "TARGETS",
    "TARGET_CLASSES",
    "CalibratedSoftmax",
    "LabelSmoothingTarget",
    "PtSimTarget",
    "PtTarget",
    "RelTarget",
    "SimTarget",
    "TemperatureSoftmax",
    "TopkTarget",
    "build_target",
    "kd_pt",
    "kd_pt_sim",
    "kd_rel",
    "kd_sim",
    "kd_topk",
    "label_smoothing",
    "standardize_logits",
]
