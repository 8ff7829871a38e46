"""Augmentation replay: the teacher's outputs on R stored augmented views of every image.

Shen and Xing (2022), "A Fast Knowledge Distillation Framework for Visual Recognition" (FKD):
instead of running the teacher on every augmented view during training, draw R views per
training image once, store each view's augmentation parameters with the teacher's output on
exactly that view, compressed to its k largest probabilities and their indices, and let training
replay a stored view at random: the student sees the view re-made from its stored parameters and
learns the stored distribution, so no teacher runs while the student trains.

A view of image i is an inception crop box (y1, x1, y2, x2, normalised) and a horizontal flip;
with mixup (function matching) also a partner image j != i and a weight w in [1/2, 1]. The view
is `flip(crop_and_resize(w * x_i + (1 - w) * x_j, box))`: the two images share the crop and the
flip (bilinear cropping is linear, so this is the mix of the two images cropped alike; Beyer et
al. mix two independently cropped views of one batch instead). Parameters are rounded to their
storage dtype *before* the teacher sees the view, so the stored parameters re-make bit for bit
the tensor the teacher saw.

The stored target is `tfkd.targets.hand_crafted.kd_topk(softmax(z / T), k)` of the teacher's logits z
on the view: the k largest probabilities kept, the remaining mass spread uniformly over the
other classes.

    storage = tfkd.teacher.replay.build_replay(teacher, x_train, views=8, topk=5, temperature=4.0)
    storage.save("replay.npz")                      # ReplayStorage.load("replay.npz")
    train = tfkd.teacher.replay_batches.replay_dataset(storage, x_train, y_train, 128, seed=0)
    tfkd.Distiller(student, teacher, temperature=storage.temperature).fit(train, ...)
    # the batches carry the stored targets as logits: the teacher never runs in training

`tfkd.augment` draws crop boxes, flips and mixup weights from a seed but applies them in the
same call; `apply_view` here applies explicit (stored) parameters.
"""

import dataclasses
import json
import os
import zipfile
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from tfkd import augment, checkpoint
from tfkd.atomic import atomic_file
from tfkd.data.pipeline import convert
from tfkd.targets import hand_crafted

PROBABILITY_DTYPES = ("float16", "float32")


def apply_view(images, boxes, flips, partner_images=None, weights=None):
    """Re-makes views from explicit parameters.

    Args:
      images: float [B, H, W, C].
      boxes: float [B, 4] normalised crop boxes (y1, x1, y2, x2), as `augment.crop_boxes` gives.
      flips: bool [B], mirror left-right after cropping.
      partner_images: optional float [B, H, W, C], the mixup partner of each image.
      weights: float [B] mixup weights w (with partner_images): w * image + (1 - w) * partner.
    Returns:
      float32 [B, H, W, C]: `flip(crop_and_resize(mix, box))`, resized back to H x W (bilinear).
    """
    images = tf.cast(images, tf.float32)
    if partner_images is not None:
        weight = tf.reshape(tf.cast(weights, tf.float32), [-1, 1, 1, 1])
        images = weight * images + (1.0 - weight) * tf.cast(partner_images, tf.float32)
    size = tf.shape(images)[1:3]
    views = tf.image.crop_and_resize(
        images, tf.cast(boxes, tf.float32), tf.range(tf.shape(images)[0]), size
    )
    views = tf.ensure_shape(views, images.shape)
    return tf.where(
        tf.reshape(tf.cast(flips, tf.bool), [-1, 1, 1, 1]), tf.reverse(views, axis=[2]), views
    )


def expand_targets(indices, probabilities, num_classes):
    """Stored top-k (indices, probabilities) [B, k] -> kd_topk target rows float32 [B, K].

    The probabilities outside the stored k are unknown; every other entry is set to -1, below
    any stored probability, so `kd_topk` keeps exactly the stored k and spreads the rest of the
    mass over the others (it never reads the values it does not keep).
    """
    indices = tf.cast(indices, tf.int32)
    probabilities = tf.cast(probabilities, tf.float32)
    k = indices.shape[-1]
    kept = tf.reduce_sum(tf.one_hot(indices, num_classes, dtype=tf.float32), axis=-2)
    scattered = tf.reduce_sum(
        tf.one_hot(indices, num_classes, dtype=tf.float32) * probabilities[..., None], axis=-2
    )
    rows = kept * scattered - (1.0 - kept)
    return hand_crafted.kd_topk(rows, k)


@dataclasses.dataclass
class ReplayStorage:
    """R stored views of N images and the teacher's top-k output on each.

    Attributes:
      boxes: float16 [N, R, 4] crop boxes (y1, x1, y2, x2) normalised to [0, 1].
      flips: bool [N, R].
      partners: int32 [N, R] mixup partner indices into the images, or None without mixup.
      mix_weights: float16 [N, R] mixup weights in [1/2, 1], or None without mixup.
      topk_indices: uint8 / uint16 / int32 [N, R, k] classes of the k largest probabilities.
      topk_probabilities: float16 or float32 [N, R, k] those probabilities, descending.
      num_classes: K.
      temperature: T of softmax(z / T) the probabilities are taken from.
      settings: how the views were drawn (crop_scale, crop_ratio, flip, mixup_alpha, seed).
    """

    boxes: np.ndarray
    flips: np.ndarray
    partners: Optional[np.ndarray]
    mix_weights: Optional[np.ndarray]
    topk_indices: np.ndarray
    topk_probabilities: np.ndarray
    num_classes: int
    temperature: float
    settings: dict

    ARRAYS = ("boxes", "flips", "partners", "mix_weights", "topk_indices", "topk_probabilities")

    @property
    def images(self):
        return self.boxes.shape[0]

    @property
    def views(self):
        return self.boxes.shape[1]

    @property
    def topk(self):
        return self.topk_indices.shape[-1]

    def _arrays(self):
        return {
            name: getattr(self, name) for name in self.ARRAYS if getattr(self, name) is not None
        }

    @property
    def bytes_per_view(self):
        """Bytes stored per view: parameters plus the compressed teacher output."""
        return sum(array.nbytes for array in self._arrays().values()) // max(
            self.images * self.views, 1
        )

    @property
    def bytes_per_image(self):
        return self.bytes_per_view * self.views

    def targets(self, example_indices, view_indices):
        """float32 [B, K] stored target distributions of the given (example, view) pairs."""
        return expand_targets(
            self.topk_indices[example_indices, view_indices],
            self.topk_probabilities[example_indices, view_indices],
            self.num_classes,
        ).numpy()

    def save(self, path):
        """Writes every array and the metadata to one uncompressed .npz file."""
        metadata = {
            "num_classes": int(self.num_classes),
            "temperature": float(self.temperature),
            "settings": self.settings,
        }
        np.savez(path, metadata=np.array(json.dumps(metadata)), **self._arrays())

    @classmethod
    def load(cls, path):
        with np.load(path, allow_pickle=False) as stored:
            metadata = json.loads(str(stored["metadata"]))
            arrays = {name: (stored[name] if name in stored.files else None) for name in cls.ARRAYS}
        return cls(
            num_classes=metadata["num_classes"],
            temperature=metadata["temperature"],
            settings=metadata["settings"],
            **arrays,
        )


def _index_dtype(num_classes):
    if num_classes <= 256:
        return np.uint8
    return np.uint16 if num_classes <= 65536 else np.int32


@dataclasses.dataclass(frozen=True)
class ReplayRecipe:
    """How `build_replay` draws the views and what it stores of each.

    Attributes:
      views: R >= 1 views per image.
      topk: k, in [1, K], probabilities kept per view.
      temperature: T of the stored softmax(z / T); distil with the same T.
      crop_scale, crop_ratio: inception crop ranges, as `tfkd.teacher.teaching.Teaching`.
      flip: mirror half of the views.
      mixup_alpha: None (no mixup) or the Beta(a, a) parameter of function matching's mixup.
      seed: int seed; equal seeds draw equal views.
      probability_dtype: "float16" (half the bytes, 11 significant bits) or "float32".
    """

    views: int = 4
    topk: int = 5
    temperature: float = 4.0
    crop_scale: tuple = (0.08, 1.0)
    crop_ratio: tuple = (3 / 4, 4 / 3)
    flip: bool = True
    mixup_alpha: Optional[float] = None
    seed: int = 0
    probability_dtype: str = "float16"


def _draw_parameters(count, height, width, recipe):
    """Every view's parameters, already rounded to their storage dtypes."""
    crop_scale, crop_ratio = tuple(recipe.crop_scale), tuple(recipe.crop_ratio)
    flip, mixup_alpha, seed = recipe.flip, recipe.mixup_alpha, recipe.seed
    boxes, flips, partners, weights = [], [], [], []
    for view in range(recipe.views):
        view_seed = tf.random.experimental.stateless_fold_in(tf.constant([seed, 0], tf.int64), view)
        crop_seed, flip_seed, partner_seed, weight_seed = augment.split_seed(view_seed, 4)
        boxes.append(
            augment.crop_boxes(count, crop_seed, height, width, crop_scale, crop_ratio)
            .numpy()
            .astype(np.float16)
        )
        flips.append(
            tf.random.stateless_uniform([count], flip_seed).numpy() < 0.5
            if flip
            else np.zeros(count, bool)
        )
        if mixup_alpha is not None:
            # j = i + 1 + s (mod N), s uniform in [0, N - 2]: uniform over the other images.
            shift = tf.random.stateless_uniform(
                [count], partner_seed, 0, count - 1, dtype=tf.int64
            ).numpy()
            partners.append(((np.arange(count) + 1 + shift) % count).astype(np.int32))
            weight = augment.sample_beta([count], weight_seed, mixup_alpha).numpy()
            weights.append(np.maximum(weight, 1.0 - weight).astype(np.float16))
    stack = lambda arrays: np.stack(arrays, axis=1) if arrays else None  # noqa: E731
    return stack(boxes), stack(flips), stack(partners), stack(weights)


def build_replay(teacher, x, batch_size=256, verbose=1, **recipe):
    """Draws `views` views of every image and stores the teacher's top-k output on each.

    Args:
      teacher: keras model giving logits, inputs in the `to_float` convention.
      x: uint8 images [N, H, W, C] (or float images in [0, 1]).
      batch_size: images per teacher forward pass.
      verbose: 1 shows a progress bar.
      **recipe: the fields of `ReplayRecipe` (views, topk, temperature, crop_scale, crop_ratio,
        flip, mixup_alpha, seed, probability_dtype); unnamed ones keep their defaults.
    Returns:
      `ReplayStorage`.
    """
    recipe = ReplayRecipe(**recipe)
    views, topk, temperature = recipe.views, recipe.topk, recipe.temperature
    mixup_alpha, probability_dtype = recipe.mixup_alpha, recipe.probability_dtype
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be images [N, H, W, C], got shape {x.shape}")
    if not isinstance(views, (int, np.integer)) or views < 1:
        raise ValueError(f"views must be an integer >= 1, got {views!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if probability_dtype not in PROBABILITY_DTYPES:
        raise ValueError(
            f"probability_dtype must be one of {', '.join(PROBABILITY_DTYPES)}, "
            f"got {probability_dtype!r}"
        )
    if mixup_alpha is not None and (not mixup_alpha > 0 or len(x) < 2):
        raise ValueError(
            f"mixup_alpha must be None or > 0 with at least 2 images, got "
            f"{mixup_alpha!r} with {len(x)} images"
        )
    count, height, width = x.shape[:3]
    num_classes = int(teacher.output_shape[-1])
    if not isinstance(topk, (int, np.integer)) or not 1 <= topk <= num_classes:
        raise ValueError(f"topk must be an integer in [1, {num_classes}], got {topk!r}")
    boxes, flips, partners, weights = _draw_parameters(count, height, width, recipe)
    indices = np.zeros((count, views, topk), _index_dtype(num_classes))
    probabilities = np.zeros((count, views, topk), probability_dtype)

    @tf.function(reduce_retracing=True)
    def top_probabilities(images, boxes, flips, partner_images, weights):
        view_images = apply_view(images, boxes, flips, partner_images, weights)
        logits = tf.cast(teacher(view_images, training=False), tf.float32)
        return tf.math.top_k(tf.nn.softmax(logits / temperature, axis=-1), topk)

    progress = keras.utils.Progbar(count * views, verbose=verbose, unit_name="view")
    for start in range(0, count, batch_size):
        rows = np.arange(start, min(start + batch_size, count))
        images = convert(tf.constant(x[rows]))
        for view in range(views):
            partner_images = mix = None
            if partners is not None:
                partner_images = convert(tf.constant(x[partners[rows, view]]))
                mix = tf.constant(weights[rows, view].astype(np.float32))
            values, classes = top_probabilities(
                images,
                tf.constant(boxes[rows, view].astype(np.float32)),
                tf.constant(flips[rows, view]),
                partner_images,
                mix,
            )
            indices[rows, view] = classes.numpy()
            probabilities[rows, view] = values.numpy()
            progress.add(len(rows))
    settings = {
        "crop_scale": list(recipe.crop_scale),
        "crop_ratio": list(recipe.crop_ratio),
        "flip": bool(recipe.flip),
        "mixup_alpha": mixup_alpha,
        "seed": int(recipe.seed),
    }
    return ReplayStorage(
        boxes,
        flips,
        partners,
        weights,
        indices,
        probabilities,
        num_classes,
        float(temperature),
        settings,
    )


def cached_replay(teacher, x, key, cache_dir, verbose=1, **build_options):
    """`build_replay(teacher, x, **build_options)` once per key, kept in `cache_dir`.

    The storage is written beside `replay-<key>.npz` and renamed to it only when complete
    (`tfkd.atomic`), so an interrupted write is never read; an entry that does not load, or was built
    on another number of images, is rebuilt.

    Args:
      key: names the teacher, the images and every build option (`tfkd.teacher.fingerprint.cache_key`).
    Returns:
      (ReplayStorage, path of the entry, built: True when computed by this call).
    """
    cache_dir = os.path.expanduser(cache_dir)
    path = os.path.join(cache_dir, f"replay-{key}.npz")
    if os.path.isfile(path):
        try:
            storage = ReplayStorage.load(path)
            if storage.images == len(x):
                return storage, path, False
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # unreadable: rebuilt below
    storage = build_replay(teacher, x, verbose=verbose, **build_options)
    os.makedirs(cache_dir, exist_ok=True)
    with atomic_file(path, "wb") as stream:
        storage.save(stream)
        stream.flush()
        checkpoint.fault_point("replay")  # the entry written, not yet renamed
    return storage, path, True
