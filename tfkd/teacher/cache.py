"""Teacher-output cache: each frozen teacher runs once over a data set, training reads the result.

A frozen teacher in inference mode gives the same logits for the same input every epoch, so
distilling on un-augmented inputs (teaching none or fixed) needs its forward pass only once:

    key = tfkd.teacher.fingerprint.cache_key([teacher], "cifar100", "train", subset=None,
                                             seed=0, preprocessing={"input_scale": 1.0})
    cache = tfkd.teacher.cache.TeacherCache("disk", cache_dir="~/.cache/tfkd")
    cached = cache.outputs([teacher], x_train, key)
    train = cache.dataset(x_train, y_train, cached, batch_size=128, shuffle=True, seed=0)
    tfkd.Distiller(student, teacher).fit(train, ...)   # the teacher never runs in training

Batches are in the format of `tfkd.teacher.batch_format`: `(x float32 [B, ...], {"labels": int32
[B], "teacher_logits": L})` with L float32 [B, C] for one teacher and a tuple of K float32 [B, C]
(teacher k at position k) for K teachers; with outputs=("logits", "features") they also carry
"teacher_features": float32 [B, *feature_shape] (a tuple of K for K teachers). Every distiller,
single- or multi-teacher, reads them as it reads any other source's batches.

The key names everything the outputs depend on: every teacher's architecture and the bytes of
every weight, the data set and split, the subset and seed that chose the examples and the
preprocessing (`tfkd.teacher.fingerprint`). A disk entry is written beside its place, chunk by
chunk, completed by a manifest written last and then renamed into place (`tfkd.atomic`), so a
write that died half way is never read: it is rebuilt. Random augmentation cannot be cached (every epoch
sees new views): use `tfkd.teacher.replay` for that.
"""

import dataclasses
import hashlib
import json
import os
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from tfkd import atomic, checkpoint
from tfkd.data import to_float
from tfkd.data.pipeline import convert
from tfkd.models import FEATURES
from tfkd.teacher import batch_format
from tfkd.teacher.fingerprint import FORMAT_VERSION, inputs_fingerprint, teacher_list

MODES = ("memory", "disk")
OUTPUT_KINDS = ("logits", "features")
MANIFEST = "manifest.json"
# float16 keeps 11 significant bits, a relative rounding error <= 2^-11 ~ 4.9e-4 per value; a
# feature chunk is stored float16 only if max |f16 - f32| <= this tolerance * max |f32|.
FEATURE_TOLERANCE = 1e-3


@dataclasses.dataclass
class CachedOutputs:
    """The teachers' outputs on N examples, in the examples' order.

    Attributes:
      key: the cache key they were stored under.
      logits: K arrays [N, C] (memory-mapped for a disk cache), teacher k at position k.
      features: K arrays [N, *feature_shape] of layer `feature_layer`, or None.
      feature_layer: the layer whose outputs `features` holds, or None.
      path: the disk entry, or None in memory.
      built: True when they were computed by this call, False when read from the cache.
    """

    key: str
    logits: list
    features: Optional[list] = None
    feature_layer: Optional[str] = None
    path: Optional[str] = None
    built: bool = False

    @property
    def count(self):
        """Number of teachers K."""
        return len(self.logits)

    def __len__(self):
        return len(self.logits[0])


class TeacherCache:
    """Computes teachers' outputs once and keeps them in memory or on disk.

    Args:
      mode: "memory" (kept in this object) or "disk" (under `cache_dir`, shared across runs).
      cache_dir: folder of the disk entries, one sub-folder per entry (mode "disk" only).
      verbose: 1 shows a progress bar while outputs are computed, 0 is silent.
      feature_tolerance: float16 features must satisfy max |f16 - f32| <= tolerance *
        max |f32| on every chunk, else `outputs` raises ValueError.
    """

    def __init__(
        self, mode="memory", cache_dir=None, verbose=1, feature_tolerance=FEATURE_TOLERANCE
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == "disk" and not cache_dir:
            raise ValueError("cache_dir: a disk cache needs a folder, got " + repr(cache_dir))
        self.mode = mode
        self.cache_dir = os.path.expanduser(cache_dir) if cache_dir else None
        self.verbose = verbose
        self.feature_tolerance = feature_tolerance
        self._memory = {}
        self.builds = 0  # how many times outputs were computed rather than read

    # ---- public ---------------------------------------------------------------------------------
    def outputs(
        self,
        teachers,
        x,
        key,
        batch_size=256,
        outputs=("logits",),
        feature_layer=FEATURES,
        dtype="float32",
        feature_dtype="float16",
    ):
        """The teachers' outputs on `x`, read from the cache or computed once and stored.

        Args:
          teachers: a keras.Model or a list of K (the ones `key` was made from).
          x: uint8 images [N, H, W, C] or float inputs [N, ...], in the `to_float` convention.
          key: `cache_key(...)` of these teachers and data.
          batch_size: examples per forward pass.
          outputs: ("logits",) or ("logits", "features").
          feature_layer: the layer whose output is cached with "features" (the same name in
            every teacher; tfkd models call their last feature map "features").
          dtype: storage dtype of the logits, "float32" or "float16".
          feature_dtype: storage dtype of the features, "float16" or "float32".
          (float16 features are checked against the cache's `feature_tolerance`.)
        Returns:
          `CachedOutputs`.
        """
        teachers = teacher_list(teachers)
        outputs = tuple(outputs)
        if outputs not in (("logits",), ("logits", "features")):
            raise ValueError(
                f"outputs must be ('logits',) or ('logits', 'features'), got {outputs!r}"
            )
        for name, value in (("dtype", dtype), ("feature_dtype", feature_dtype)):
            if value not in ("float16", "float32"):
                raise ValueError(f"{name} must be 'float16' or 'float32', got {value!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        x = np.asarray(x)
        spec = {
            "format": FORMAT_VERSION,
            "key": key,
            "teachers": len(teachers),
            "outputs": list(outputs),
            "feature_layer": feature_layer if "features" in outputs else None,
            "dtype": dtype,
            "feature_dtype": feature_dtype,
            "examples": int(len(x)),
            "inputs": inputs_fingerprint(x),
        }
        entry = self._entry_name(spec)
        found = self._read(entry, spec)
        if found is not None:
            return found
        views = [self._view(teacher, spec["feature_layer"]) for teacher in teachers]
        if self.mode == "memory":
            arrays = self._allocate(
                views, x, spec, lambda name, shape, dtype: np.empty(shape, dtype)
            )
            self._compute(views, x, arrays, spec, batch_size)
            self._memory[entry] = (spec, arrays)
            result = self._wrap(spec, arrays, None)
        else:
            result = self._write(entry, views, x, spec, batch_size)
        self.builds += 1
        result.built = True
        return result

    def dataset(self, x, y, cached, batch_size, shuffle=False, seed=0, drop_remainder=False):
        """`cached_dataset(x, y, cached, ...)`."""
        return cached_dataset(x, y, cached, batch_size, shuffle, seed, drop_remainder)

    # ---- storage ----------------------------------------------------------------------------------
    def _entry_name(self, spec):
        described = {k: v for k, v in spec.items() if k != "inputs"}
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:32]

    def _read(self, entry, spec):
        if self.mode == "memory":
            stored = self._memory.get(entry)
            if stored is None:
                return None
            self._check_same_inputs(stored[0], spec, "memory")
            return self._wrap(stored[0], stored[1], None)
        path = os.path.join(self.cache_dir, entry)
        manifest_path = os.path.join(path, MANIFEST)
        if not os.path.isfile(manifest_path):
            return None  # absent, or a write that never completed: rebuilt
        try:
            with open(manifest_path) as handle:
                manifest = json.load(handle)
        except (OSError, ValueError):
            return None
        stored_spec = manifest.get("spec", {})
        if any(stored_spec.get(k) != v for k, v in spec.items() if k != "inputs"):
            return None  # another key or layout under this name: never read
        self._check_same_inputs(stored_spec, spec, path)
        arrays = {
            name: np.load(os.path.join(path, f"{name}.npy"), mmap_mode="r")
            for name in manifest["arrays"]
        }
        return self._wrap(stored_spec, arrays, path)

    @staticmethod
    def _check_same_inputs(stored_spec, spec, where):
        if stored_spec.get("inputs") != spec["inputs"]:
            raise ValueError(
                f"key {spec['key']}: the cache at {where} holds outputs for other inputs than "
                "the x passed (same number of examples, different values); the key's "
                "dataset_id / split / subset / seed / preprocessing do not identify x"
            )

    def _write(self, entry, views, x, spec, batch_size):
        # The entry is written beside its place and renamed into it complete (tfkd.atomic): a
        # write that dies half way leaves no entry, and the next run rebuilds it.
        with atomic.atomic_path(os.path.join(self.cache_dir, entry)) as folder:
            os.makedirs(folder)
            arrays = self._allocate(
                views,
                x,
                spec,
                lambda name, shape, dtype: np.lib.format.open_memmap(
                    os.path.join(folder, f"{name}.npy"), mode="w+", dtype=dtype, shape=shape
                ),
            )
            self._compute(views, x, arrays, spec, batch_size)
            for array in arrays.values():
                array.flush()
            checkpoint.fault_point("cache")  # every array written, the entry not yet complete
            names = sorted(arrays)
            del arrays
            with open(os.path.join(folder, MANIFEST), "w") as handle:
                json.dump({"spec": spec, "arrays": names}, handle)
        return self._read(entry, spec)

    # ---- computing ------------------------------------------------------------------------------
    @staticmethod
    def _view(teacher, feature_layer):
        if feature_layer is None:
            model = teacher
        else:
            try:
                features = teacher.get_layer(feature_layer).output
            except ValueError:
                raise ValueError(
                    f"feature_layer: teacher {teacher.name} has no layer named {feature_layer!r}"
                ) from None
            model = keras.Model(teacher.input, [teacher.output, features])

        @tf.function(reduce_retracing=True)
        def forward(inputs):
            result = model(inputs, training=False)
            return tuple(result) if isinstance(result, (list, tuple)) else (result,)

        return forward, model

    @staticmethod
    def _allocate(views, x, spec, allocate):
        probe = tf.nest.map_structure(tf.constant, to_float(x[:1]))  # text: a dict
        arrays = {}
        for k, (forward, _) in enumerate(views):
            results = forward(probe)
            arrays[f"teacher_{k}_logits"] = allocate(
                f"teacher_{k}_logits", (len(x), *results[0].shape[1:]), spec["dtype"]
            )
            if len(results) > 1:
                arrays[f"teacher_{k}_features"] = allocate(
                    f"teacher_{k}_features", (len(x), *results[1].shape[1:]), spec["feature_dtype"]
                )
        return arrays

    def _compute(self, views, x, arrays, spec, batch_size):
        feature_tolerance = self.feature_tolerance
        progress = keras.utils.Progbar(len(x), verbose=self.verbose, unit_name="example")
        for start in range(0, len(x), batch_size):
            chunk = tf.nest.map_structure(tf.constant, to_float(x[start : start + batch_size]))
            stop = min(start + batch_size, len(x))
            for k, (forward, _) in enumerate(views):
                results = forward(chunk)
                arrays[f"teacher_{k}_logits"][start:stop] = results[0].numpy()
                if len(results) > 1:
                    features = results[1].numpy()
                    stored = features.astype(spec["feature_dtype"])
                    error = np.abs(stored.astype(np.float32) - features).max()
                    scale = np.abs(features).max()
                    if not error <= feature_tolerance * max(scale, np.finfo(np.float32).tiny):
                        raise ValueError(
                            f"feature_dtype={spec['feature_dtype']!r} loses too much on teacher "
                            f"{k}'s features: max |stored - exact| = {error:.3g} > "
                            f"{feature_tolerance:g} x max |exact| = {scale:.3g}; use "
                            "feature_dtype='float32'"
                        )
                    arrays[f"teacher_{k}_features"][start:stop] = stored
            progress.update(stop)

    def _wrap(self, spec, arrays, path):
        count = spec["teachers"]
        features = None
        if "features" in spec["outputs"]:
            features = [arrays[f"teacher_{k}_features"] for k in range(count)]
        return CachedOutputs(
            key=spec["key"],
            logits=[arrays[f"teacher_{k}_logits"] for k in range(count)],
            features=features,
            feature_layer=spec["feature_layer"],
            path=path,
        )


# ---- the training pipeline -------------------------------------------------------------------
def cached_dataset(x, y, cached, batch_size, shuffle=False, seed=0, drop_remainder=False):
    """Batches of examples with their cached teacher outputs, read batch by batch.

    Examples are chosen by index (shuffled like `tfkd.data.as_dataset` with the same seed,
    reshuffled every epoch), and each batch gathers its rows of x, y and the cached arrays (a
    disk cache is memory-mapped, so only those rows are read), in parallel, prefetched.

    Args:
      x: uint8 images [N, H, W, C] or float inputs [N, ...] (as given to `outputs`).
      y: integer labels [N].
      cached: `CachedOutputs` for x.
      batch_size: examples per batch; shuffle, seed, drop_remainder: as in `as_dataset`.
    Returns:
      tf.data.Dataset of (x float32 [B, ...], {"labels": int32 [B], "teacher_logits": float32
      [B, C] (K = 1) or a tuple of K float32 [B, C], and with features "teacher_features":
      float32 [B, ...] (K = 1) or a tuple of K}).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    y = np.asarray(y).astype(np.int32)
    if not len(x) == len(y) == len(cached):
        raise ValueError(
            f"x, y and the cached outputs disagree on the number of examples: "
            f"{len(x)}, {len(y)}, {len(cached)}"
        )
    sources = [x, y] + list(cached.logits) + list(cached.features or [])
    # uint8 images travel as uint8 (4x less to copy) and become float32 in the graph; int32
    # token ids become the text models' dict inputs there.
    input_kind = np.asarray(x[:1]).dtype.type
    input_kind = input_kind if input_kind in (np.uint8, np.int32) else np.float32
    kinds = [input_kind, np.int32] + [np.float32] * (len(sources) - 2)

    def gather(indices):
        indices = np.asarray(indices)
        return tuple(
            np.asarray(source[indices]).astype(kind, copy=False)
            for source, kind in zip(sources, kinds)
        )

    shapes = [(None, *np.shape(source)[1:]) for source in sources]

    def load(indices):
        values = tf.numpy_function(
            gather, [indices], [tf.as_dtype(k) for k in kinds], stateful=False
        )
        values = [tf.ensure_shape(value, shape) for value, shape in zip(values, shapes)]
        inputs = convert(values[0])
        count = cached.count
        logits = values[2 : 2 + count]
        features = values[2 + count :] if cached.features is not None else None
        one = count == 1
        return inputs, batch_format.targets(
            values[1],
            logits[0] if one else tuple(logits),
            None if features is None else (features[0] if one else tuple(features)),
        )

    indices = tf.data.Dataset.range(len(y))
    if shuffle and len(y):
        indices = indices.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    indices = indices.batch(batch_size, drop_remainder=drop_remainder)
    return indices.map(load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
