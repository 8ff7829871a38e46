"""tfkd: knowledge distillation for Keras 3 on TensorFlow."""
from tfkd import calibration, data, export, losses, methods, models, targets
from tfkd.distillers import Distiller

__all__ = ["Distiller", "calibration", "data", "export", "losses", "methods", "models", "targets"]
__version__ = "0.1.0"
