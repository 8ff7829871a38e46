"""tfkd: knowledge distillation for Keras 3 on TensorFlow."""
from tfkd import losses, targets
from tfkd.distillers import Distiller
from tfkd.distillers.multi_teacher import MultiTeacherDistiller  # noqa: F401 (+ its methods)

__all__ = ["Distiller", "losses", "targets"]
__version__ = "0.1.0"
