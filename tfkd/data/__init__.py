"""Data sets for distillation: tensorflow-datasets, local files and the synthetic super-class task.

bundle = load(DataConfig("cifar100"))
train = as_dataset(*bundle.train, batch_size=128, shuffle=True, augment=True)
"""

from tfkd.data.bundle import DataBundle, DataConfig, DataUnavailableError, to_float
from tfkd.data.loader import load
from tfkd.data.pipeline import as_dataset
from tfkd.data.sources import ACCEPTED_FORMS
from tfkd.data.synthetic import make_superclass_dataset

__all__ = [
    "ACCEPTED_FORMS",
    "DataBundle",
    "DataConfig",
    "DataUnavailableError",
    "as_dataset",
    "load",
    "make_superclass_dataset",
    "to_float",
]
