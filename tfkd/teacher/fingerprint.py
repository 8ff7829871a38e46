"""What names a teacher's outputs: a key of the teachers' architectures and every weight's bytes,
the data set, split, subset, seed and preprocessing, and a digest of the inputs themselves.

A stored output (cache entry or replay views) is read only under the key it was written with,
so a teacher file replaced between two runs makes another key and the outputs are rebuilt.
"""

import hashlib
import json

import keras
import numpy as np
from keras import ops

FORMAT_VERSION = 1


def teacher_list(teachers):
    if isinstance(teachers, keras.Model):
        return [teachers]
    teachers = list(teachers or [])
    if not teachers or not all(isinstance(t, keras.Model) for t in teachers):
        raise ValueError("teachers must be a keras.Model or a non-empty list of keras.Model")
    return teachers


def _architecture(model):
    try:
        described = json.loads(model.to_json())
    except Exception:  # noqa: BLE001 - e.g. a wrapped SavedModel; its weights still count
        return json.dumps([type(layer).__name__ for layer in model.layers])
    # How the model was compiled (optimizer names count up per process) does not change its
    # outputs.
    described.pop("compile_config", None)
    return json.dumps(described, sort_keys=True)


def cache_key(teachers, dataset_id, split, subset=None, seed=None, preprocessing=None):
    """A hex digest naming the teachers' outputs on one data split.

    Args:
      teachers: a keras.Model or a list of them (order matters).
      dataset_id: the data set's identity, e.g. "cifar100" or "npz:/data/set".
      split: "train", "validation", ...
      subset: what chose the examples (e.g. a train limit), JSON-serialisable, or None.
      seed: the seed of that choice, or None.
      preprocessing: how inputs were prepared (input scale, resizing, ...), JSON-serialisable.
    Returns:
      str, 32 hex digits; equal only for equal architectures, weights (every byte), data, split,
      subset, seed and preprocessing.
    """
    digest = hashlib.sha256()
    digest.update(f"tfkd-teacher-cache-{FORMAT_VERSION}".encode())
    for teacher in teacher_list(teachers):
        digest.update(_architecture(teacher).encode())
        for weight in teacher.weights:
            value = np.ascontiguousarray(ops.convert_to_numpy(weight))
            digest.update(f"{weight.path}:{value.dtype}:{value.shape}".encode())
            digest.update(value.tobytes())
    identity = {
        "dataset": dataset_id,
        "split": split,
        "subset": subset,
        "seed": seed,
        "preprocessing": preprocessing,
    }
    digest.update(json.dumps(identity, sort_keys=True, default=repr).encode())
    return digest.hexdigest()[:32]


def inputs_fingerprint(x):
    """A digest of the inputs' shape, dtype and bytes (to catch a key reused for other data)."""
    x = np.ascontiguousarray(x)
    digest = hashlib.blake2b(f"{x.dtype}:{x.shape}".encode(), digest_size=16)
    digest.update(memoryview(x).cast("B"))
    return digest.hexdigest()
