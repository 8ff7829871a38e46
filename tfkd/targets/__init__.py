"""Teacher-target transforms: teacher logits (and labels) -> target distribution [batch, K].

`build_target(name, **options)` builds any registered transform; importing this package
registers them all (temperature, calibrated, label_smoothing, kd_pt, kd_sim, kd_pt_sim, kd_topk,
kd_rel). The partial targets' pure functions are `tfkd.partial_targets`.
"""
from tfkd.partial_targets import (kd_pt, kd_pt_sim, kd_rel, kd_sim,  # noqa: F401
                                  kd_topk, label_smoothing)
from tfkd.targets.base import TARGETS, TemperatureSoftmax, build_target  # noqa: F401
from tfkd.targets.calibrated import CALIBRATION_MODES, CalibratedSoftmax  # noqa: F401
from tfkd.targets.partial import (TARGET_CLASSES, LabelSmoothingTarget,  # noqa: F401
                                  PtSimTarget, PtTarget, RelTarget, SimTarget, TopkTarget)
