"""Teaching modes: what the teacher and the student see of each training batch.

Beyer et al. (2022), "Knowledge distillation: A good teacher is patient and consistent":

  fixed              the teacher's logits are computed once, before training, on the
                     un-augmented images and carried in the data set; the student sees
                     inception-cropped, flipped views (the paper's "fix/ic").
  independent        teacher and student see two independently augmented views.
  consistent         both see the same augmented view.
  function_matching  consistent plus mixup: the student matches the teacher as a function on
                     an input manifold widened beyond the training images.

A `Teaching` plugs into any logit-based `Distiller` (`Distiller(..., teaching="consistent")`,
or `distiller.teaching = Teaching(...)` before `compile`) through its `prepare_batch` hook:
the augmentation runs inside `train_step`, once per batch, from a seed derived from the
optimizer step (and the replica), so teacher and student receive bit-identical tensors where
the mode says so. Evaluation sees un-augmented inputs.

`fixed` needs batches `(x, {"labels": y, "teacher_logits": z})`: build them with
`fixed_dataset(x, y, teacher_predictions(teacher, x), batch_size)`.
"""
import dataclasses
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tfkd import augment
from tfkd.data import as_dataset, to_float
from tfkd.data.pipeline import convert

MODES = ("fixed", "independent", "consistent", "function_matching")
LABELS, TEACHER_LOGITS = "labels", "teacher_logits"


class PrecomputedLogits(NamedTuple):
    """Teacher input standing for logits already computed (fixed teaching): [batch, K]."""

    logits: tf.Tensor


@dataclasses.dataclass(frozen=True)
class Teaching:
    """One teaching mode and its augmentation.

    Attributes:
      mode: one of MODES.
      mixup_alpha: Beta(a, a) parameter of the mixup weight (function_matching only), > 0.
      mixup_partners: "permutation" (random, no example paired with itself) or "roll".
      crop_scale: (min, max) area fraction of the inception crop, in (0, 1].
      crop_ratio: (min, max) aspect ratio of the inception crop.
      flip: mirror images left-right with probability 1/2.
      seed: base seed of the augmentation; the optimizer step and the replica are folded in.
    Crop and flip apply to image batches [batch, H, W, C] only; vectors pass unchanged (so on
    vectors `independent` equals `consistent`), and mixup applies to both.
    """

    mode: str
    mixup_alpha: float = 1.0
    mixup_partners: str = "permutation"
    crop_scale: tuple = (0.08, 1.0)
    crop_ratio: tuple = (3 / 4, 4 / 3)
    flip: bool = True
    seed: int = 0

    def __post_init__(self):
        scale, ratio = tuple(self.crop_scale), tuple(self.crop_ratio)
        checks = [
            ("teaching", self.mode, self.mode in MODES, f"one of {', '.join(MODES)}"),
            ("mixup_alpha", self.mixup_alpha, self.mixup_alpha > 0, "a number > 0"),
            ("mixup_partners", self.mixup_partners, self.mixup_partners in augment.PARTNERS,
             f"one of {', '.join(augment.PARTNERS)}"),
            ("crop_scale", scale, len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1,
             "(min, max) with 0 < min <= max <= 1"),
            ("crop_ratio", ratio, len(ratio) == 2 and 0 < ratio[0] <= ratio[1],
             "(min, max) with 0 < min <= max"),
        ]
        for name, value, ok, expected in checks:
            if not ok:
                raise ValueError(f"{name} must be {expected}, got {value!r}")

    # ---- the hook a Distiller delegates to ------------------------------------------------------
    def prepare_batch(self, distiller, x, y, training):
        """(student input, teacher input, labels) for one batch; see the module docstring.

        `y` is the labels, or a dict with "labels" and "teacher_logits" (fixed teaching). The
        teacher input is a `PrecomputedLogits` when the logits come from the data set.
        """
        labels, carried = unpack_labels(y)
        if self.mode == "fixed":
            check_logit_based(distiller)
            if carried is None:
                if training:
                    raise ValueError(
                        "teaching='fixed' trains on batches (x, {'labels': y, 'teacher_logits': "
                        "z}); build them with tfkd.teaching.fixed_dataset")
                return x, x, labels
            teacher_x = PrecomputedLogits(carried)
            if not training:
                return x, teacher_x, labels
            return self.view(x, self.batch_seed(distiller)), teacher_x, labels
        if not training:
            return x, x, labels
        student_seed, teacher_seed, mixup_seed = augment.split_seed(self.batch_seed(distiller), 3)
        student_x = self.view(x, student_seed)
        if self.mode == "independent":
            return student_x, self.view(x, teacher_seed), labels
        if self.mode == "function_matching":
            student_x = augment.mixup(student_x, mixup_seed, self.mixup_alpha,
                                      self.mixup_partners)[0]
        return student_x, student_x, labels

    # ---- pieces ---------------------------------------------------------------------------------
    def view(self, x, seed):
        """Inception crop then flip for images [batch, H, W, C]; other inputs unchanged."""
        if x.shape.rank != 4:
            return x
        crop_seed, flip_seed = augment.split_seed(seed, 2)
        x = augment.random_resized_crop(x, crop_seed, self.crop_scale, self.crop_ratio)
        return augment.random_flip(x, flip_seed) if self.flip else x

    def batch_seed(self, distiller):
        """int64 [2] seed of this training step: (seed, optimizer step), replica folded in,
        so every step and every replica draws fresh augmentations, reproducibly."""
        step = tf.cast(distiller.optimizer.iterations, tf.int64)
        seed = tf.stack([tf.constant(self.seed, tf.int64), step])
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            seed = tf.random.experimental.stateless_fold_in(seed,
                                                            context.replica_id_in_sync_group)
        return seed


def build(teaching):
    """None (the batch goes unchanged to both models), a mode name or a `Teaching`."""
    if teaching is None or isinstance(teaching, Teaching):
        return teaching
    if isinstance(teaching, str):
        return Teaching(teaching)
    raise ValueError(f"teaching must be None, one of {', '.join(MODES)} or a "
                     f"tfkd.teaching.Teaching, got {teaching!r}")


def unpack_labels(y):
    """(labels, carried teacher logits or None) from plain labels or a fixed-teaching dict."""
    if isinstance(y, dict):
        if LABELS not in y:
            raise ValueError(f"label dict needs key {LABELS!r}, got keys {sorted(y)}")
        return y[LABELS], y.get(TEACHER_LOGITS)
    return y, None


def check_logit_based(distiller):
    """Fixed teaching replaces the teacher's forward pass by carried logits, which is only
    right for methods that take nothing else from the teacher."""
    from tfkd.distillers.base import Distiller  # the base imports this module
    if type(distiller).teacher_logits is not Distiller.teacher_logits:
        raise ValueError(
            f"teaching='fixed' carries only the teacher's logits, but {type(distiller).__name__} "
            "overrides teacher_logits (it needs more from the teacher); use independent, "
            "consistent or function_matching")


# ---- data for fixed teaching and out-of-domain distillation --------------------------------------
def teacher_predictions(teacher, x, batch_size=256, verbose=0):
    """The teacher's logits on un-augmented inputs, computed once.

    Args:
      teacher: keras model, inputs in the `to_float` convention.
      x: uint8 images [N, H, W, C] or float vectors [N, D].
    Returns:
      float32 [N, K].
    """
    inputs = as_dataset(x, np.zeros(len(x), np.int32), batch_size).map(lambda a, b: a)
    return np.asarray(teacher.predict(inputs, verbose=verbose), np.float32)


def fixed_dataset(x, y, teacher_logits, batch_size, shuffle=False, seed=0,
                  drop_remainder=False):
    """Batches for fixed teaching: (x float32 [B, ...], {"labels": int32 [B],
    "teacher_logits": float32 [B, K]}), each example keeping its own precomputed logits."""
    y = np.asarray(y).astype(np.int32)
    teacher_logits = np.asarray(teacher_logits, np.float32)
    if not len(x) == len(y) == len(teacher_logits):
        raise ValueError(f"x, y and teacher_logits disagree on the number of examples: "
                         f"{len(x)}, {len(y)}, {len(teacher_logits)}")
    dataset = tf.data.Dataset.from_tensor_slices((x, {LABELS: y, TEACHER_LOGITS: teacher_logits}))
    if shuffle:
        dataset = dataset.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.map(lambda inputs, targets: (convert(inputs), targets),
                       num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def match_input_shape(x, input_shape, name="--distill_dataset", chunk_size=2048):
    """Brings another data set's inputs to the teacher's input shape.

    Images are resized (bilinear, antialiased) and converted between grey-scale (averaged with
    the ITU-R 601 luma weights) and RGB (repeated); vectors must already have the right size.

    Args:
      x: uint8 images [N, h, w, c] or float vectors [N, d].
      input_shape: the teacher's (H, W, C) or (D,).
    Returns:
      x with shape [N, *input_shape], uint8 for images.
    Raises:
      ValueError naming `name` when no conversion applies.
    """
    x = np.asarray(x)
    input_shape = tuple(input_shape)
    if x.shape[1:] == input_shape:
        return x
    if x.ndim != 4 or len(input_shape) != 3:
        raise ValueError(f"{name}: inputs of shape {x.shape[1:]} cannot be brought to the "
                         f"teacher's input shape {input_shape}; only images can be resized")
    channels, target = x.shape[-1], input_shape[-1]
    if channels != target and {channels, target} != {1, 3}:
        raise ValueError(f"{name}: cannot convert {channels}-channel images to {target} channels "
                         "(only grey-scale <-> RGB)")
    converted = []
    for start in range(0, len(x), chunk_size):
        chunk = tf.convert_to_tensor(to_float(x[start:start + chunk_size]))
        chunk = tf.image.resize(chunk, input_shape[:2], antialias=True)
        if channels == 3 and target == 1:
            chunk = tf.image.rgb_to_grayscale(chunk)
        elif channels == 1 and target == 3:
            chunk = tf.image.grayscale_to_rgb(chunk)
        converted.append(chunk.numpy())
    images = np.concatenate(converted) if converted else np.zeros((0, *input_shape), np.float32)
    if x.dtype == np.uint8:
        return np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
    return images.astype(np.float32)

