"""tfkd: knowledge distillation for Keras 3 on TensorFlow."""
from tfkd import losses, targets
from tfkd.distillers import Distiller
from tfkd.distillers import selective_reliance  # noqa: F401 - registers kd_sr

__all__ = ["Distiller", "losses", "targets"]
__version__ = "0.1.0"
