"""tfkd: knowledge distillation for Keras 3 on TensorFlow.

The public API (`tfkd.Distiller`, `tfkd.methods`, `tfkd.experiment`, ...) is imported on first
use, so that `tfkd --version` and `tfkd <tool> --help` answer without importing TensorFlow.
Registries import the modules that fill them (`tfkd.registry`), so the order in which tfkd
modules are first imported does not matter.
"""

import importlib
import importlib.util

__version__ = "0.1.0"
__all__ = [
    "Distiller",
    "MultiTeacherDistiller",
    "callbacks",
    "calibration",
    "data",
    "experiment",
    "export",
    "losses",
    "methods",
    "models",
    "targets",
]

_CLASSES = {
    "Distiller": "tfkd.distillers",
    "MultiTeacherDistiller": "tfkd.distillers.multi_teacher",
}


def __getattr__(name):
    if name in _CLASSES:
        return getattr(importlib.import_module(_CLASSES[name]), name)
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
