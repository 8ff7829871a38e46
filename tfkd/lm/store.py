"""Stored teacher top-k log-probabilities for every token of a training split, memory-mapped.

    store = TopKStore.open_or_build(root, teacher, data.train, k=32)
    distiller = CausalLMDistiller(student, teacher=None)  # the teacher can leave memory now
    distiller.fit(store.dataset(data.train, batch_size=32, shuffle=True), ...)

Per input position of every training sequence the store holds the teacher's k most likely next
tokens (int32 ids), their log-probabilities log softmax(z_T) (float16, at temperature 1: one store
serves every distillation temperature, `tfkd.losses.sparse_topk_kl` tempers them) and the
teacher's remaining mass 1 - sum of the top-k probabilities (float32, computed at full
precision): 6k + 4 bytes per token. A store lives in a directory named by a key of the teacher's
weights, the data's tokens and k; it is written through `tfkd.atomic` (beside, then renamed when
complete), and one found without its completion record or with arrays of the wrong shape is
rebuilt.
"""

import hashlib
import json
import os

import numpy as np
import tensorflow as tf

from tfkd import atomic, checkpoint
from tfkd.data.language_modeling import epoch_batches

ARRAYS = {
    "teacher_topk_ids": "int32",
    "teacher_topk_log_probs": "float16",
    "teacher_tail_mass": "float32",
}
RECORD = "store.json"
# The temperature of the stored log-probabilities (part of the key of stores written before
# stores were temperature-free, which stay valid).
STORED_TEMPERATURE = 1.0


def fingerprint(*arrays):
    """sha256 of the arrays' dtypes, shapes and bytes, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def store_key(teacher, split, k):
    """The key of a store: teacher weights, the split's tokens and mask, and k."""
    weights = fingerprint(*teacher.get_weights())
    tokens = fingerprint(split.token_ids, split.padding_mask)
    return hashlib.sha256(f"{weights}:{tokens}:{k}:{STORED_TEMPERATURE!r}".encode()).hexdigest()


def bytes_per_token(k):
    """Stored bytes per token position: k int32 ids, k float16 log-probabilities, a float32."""
    return sum(
        np.dtype(dtype).itemsize * (1 if name == "teacher_tail_mass" else k)
        for name, dtype in ARRAYS.items()
    )


def check_k(k, vocabulary_size):
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"--cache_topk must be a positive integer, got {k!r}")
    if vocabulary_size is not None and k > vocabulary_size:
        raise ValueError(f"--cache_topk {k} exceeds the vocabulary size {vocabulary_size}")


def teacher_topk(teacher, inputs, k):
    """(ids int32, log-probabilities float32, tail mass float32) of `teacher` on a batch."""
    log_probs = tf.nn.log_softmax(tf.cast(teacher(inputs, training=False), tf.float32), axis=-1)
    top = tf.math.top_k(log_probs, k=k)
    tail = tf.maximum(1.0 - tf.reduce_sum(tf.exp(top.values), axis=-1), 0.0)
    return top.indices.numpy(), top.values.numpy(), tail.numpy()


class TopKStore:
    """A complete store, its arrays memory-mapped read-only ([sequences, time, k] and
    [sequences, time]); `built` says whether this process wrote it."""

    def __init__(self, directory, built=False):
        self.directory = directory
        with open(os.path.join(directory, RECORD)) as handle:
            self.record = json.load(handle)
        self.arrays = {
            name: np.load(os.path.join(directory, f"{name}.npy"), mmap_mode="r") for name in ARRAYS
        }
        self.built = built

    @property
    def k(self):
        return self.record["k"]

    @property
    def size_bytes(self):
        return sum(array.nbytes for array in self.arrays.values())

    @property
    def bytes_per_token(self):
        return self.size_bytes / (self.record["sequences"] * self.record["time"])

    @classmethod
    def open_or_build(cls, root, teacher, split, k, batch_size=32):
        """The store of (teacher, split, k) under `root`: reused when complete, built otherwise
        (a partial one left by an interrupted run is replaced)."""
        check_k(k, teacher.output_shape[-1] if hasattr(teacher, "output_shape") else None)
        directory = os.path.join(root, f"lm_topk_{store_key(teacher, split, k)[:24]}")
        x, _, _ = split.shifted()
        shape = x["token_ids"].shape
        if cls._complete(directory, shape, k):
            return cls(directory)
        with atomic.atomic_path(directory) as temporary:
            os.makedirs(temporary)
            cls._write(temporary, teacher, x, k, batch_size)
        return cls(directory, built=True)

    @staticmethod
    def _write(temporary, teacher, x, k, batch_size):
        shape = x["token_ids"].shape
        arrays = {
            name: np.lib.format.open_memmap(
                os.path.join(temporary, f"{name}.npy"),
                mode="w+",
                dtype=dtype,
                shape=shape if name == "teacher_tail_mass" else (*shape, k),
            )
            for name, dtype in ARRAYS.items()
        }
        for start in range(0, shape[0], batch_size):
            rows = slice(start, start + batch_size)
            ids, log_probs, tail = teacher_topk(
                teacher, {name: value[rows] for name, value in x.items()}, k
            )
            arrays["teacher_topk_ids"][rows] = ids
            arrays["teacher_topk_log_probs"][rows] = log_probs.astype("float16")
            arrays["teacher_tail_mass"][rows] = tail
            checkpoint.fault_point("store", 1, start // batch_size + 1)
        for array in arrays.values():
            array.flush()
        del arrays
        record = {
            "k": k,
            "temperature": STORED_TEMPERATURE,
            "sequences": int(shape[0]),
            "time": int(shape[1]),
            "teacher": getattr(teacher, "name", None),
            "bytes_per_token": bytes_per_token(k),
        }
        # The record is written last: a directory without it is incomplete.
        with open(os.path.join(temporary, RECORD), "w") as handle:
            json.dump(record, handle, indent=1)

    @staticmethod
    def _complete(directory, shape, k):
        try:
            with open(os.path.join(directory, RECORD)) as handle:
                record = json.load(handle)
            for name in ARRAYS:
                array = np.load(os.path.join(directory, f"{name}.npy"), mmap_mode="r")
                expected = shape if name == "teacher_tail_mass" else (*shape, k)
                if array.shape != tuple(expected):
                    return False
            return record["k"] == k
        except (OSError, ValueError, KeyError):
            return False

    def dataset(self, split, batch_size, shuffle=False, seed=0, orders=None):
        """(x with the stored top-k, y, sample_weight) batches of `split`, which must be the
        split the store was built from; the stored arrays are read batch by batch. With
        `orders` (int [epochs, N]): the batches of those epochs in those orders."""
        x, y, weight = split.shifted()
        if x["token_ids"].shape[0] != self.record["sequences"]:
            raise ValueError(
                f"the store holds {self.record['sequences']} sequences; the split "
                f"has {x['token_ids'].shape[0]}"
            )
        arrays = self.arrays
        k, time = self.k, x["token_ids"].shape[1]

        def read(rows):
            rows = np.sort(rows)  # sorted reads are sequential on disk
            return (rows, *(np.asarray(arrays[name][rows]) for name in ARRAYS))

        def gather(rows):
            rows, ids, log_probs, tail = tf.numpy_function(
                read, [rows], [tf.int64, tf.int32, tf.float16, tf.float32]
            )
            rows.set_shape([None])
            ids.set_shape([None, time, k])
            log_probs.set_shape([None, time, k])
            tail.set_shape([None, time])
            inputs = {name: tf.gather(value, rows) for name, value in x.items()}
            inputs.update(
                teacher_topk_ids=ids, teacher_topk_log_probs=log_probs, teacher_tail_mass=tail
            )
            return inputs, tf.gather(y, rows), tf.gather(weight, rows)

        if orders is not None:
            return epoch_batches(orders, batch_size).map(gather).prefetch(2)
        indices = tf.data.Dataset.range(len(y))
        if shuffle:
            indices = indices.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
        return indices.batch(batch_size).map(gather).prefetch(2)
