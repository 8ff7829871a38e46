"""tfkd: knowledge distillation for Keras 3 on TensorFlow."""
from tfkd import losses, targets
from tfkd.distillers import Distiller
from tfkd import partial  # noqa: F401  (registers ls, kd_pt, kd_sim, kd_pt_sim, kd_topk, kd_rel)

__all__ = ["Distiller", "losses", "targets"]
__version__ = "0.1.0"
