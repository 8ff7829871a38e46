"""tfkd: knowledge distillation for Keras 3 on TensorFlow."""
from tfkd import losses, targets
from tfkd.distillers import Distiller

__all__ = ["Distiller", "losses", "targets"]
__version__ = "0.1.0"
