"""Distillers: `keras.Model` subclasses that override `train_step` and `test_step`."""
from tfkd.distillers.base import Distiller, check_class_counts, global_mean

__all__ = ["Distiller", "check_class_counts", "global_mean"]
