"""tfkd: knowledge distillation for Keras 3 on TensorFlow."""
from tfkd import calibration, losses, targets
from tfkd.distillers import Distiller

__all__ = ["Distiller", "calibration", "losses", "targets"]
__version__ = "0.1.0"
