"""tfkd: knowledge distillation for Keras 3 on TensorFlow."""
from tfkd import calibration, data, export, losses, methods, models, targets
from tfkd.distillers import Distiller  # imports every method module: the registry is complete
from tfkd.distillers.multi_teacher import MultiTeacherDistiller  # noqa: F401
from tfkd import callbacks, experiment  # noqa: E402  (experiment reads the registered methods)

__all__ = ["Distiller", "MultiTeacherDistiller", "callbacks", "calibration", "data", "experiment",
           "export", "losses", "methods", "models", "targets"]
__version__ = "0.1.0"
