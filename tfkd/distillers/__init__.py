"""Distillers: `keras.Model` subclasses that override `train_step` and `test_step`.

Every module of this package but `base` is a method (or a family of methods) that registers
itself in `tfkd.methods.METHODS`; importing the package imports them all, so a new method is a
new module here and nothing else changes.
"""

import importlib
import pkgutil

from tfkd.distillers.base import Distiller
from tfkd.global_batch import global_mean
from tfkd.teacher.loading import check_class_counts

__all__ = ["Distiller", "check_class_counts", "global_mean"]

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base" and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
