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
the augmentation runs inside `train_step`, so teacher and student receive bit-identical
tensors where the mode says so. Evaluation sees un-augmented inputs.

Augmentation is drawn once per GLOBAL batch, so N replicas train exactly as one replica on the
same global batch. The seed of a step is (seed, optimizer step), the same on every replica.
`parameters(global_batch_size, seed, image_size)` draws every example's explicit parameters —
crop box, flip, mixup partner and weight — for the whole global batch, example i of the
global batch being row i; a replica holding rows [offset, offset + local batch) (replicas hold
consecutive slices in replica order, as `tf.distribute` splits a batch) takes its own rows and
crops and flips only its own images. A mixup partner may sit on another replica, so in
function_matching each replica gathers the global batch of augmented views (one all-gather of
the student's input per step) and mixes its examples with their partners from it. What an
example gets thus depends on its position in the global batch only, not on which replica
holds it. `apply(x, parameters)` applies given parameters to a whole batch, so parameters can
be stored and replayed.

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
      seed: base seed of the augmentation; the optimizer step is folded in.
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
            (
                "mixup_partners",
                self.mixup_partners,
                self.mixup_partners in augment.PARTNERS,
                f"one of {', '.join(augment.PARTNERS)}",
            ),
            (
                "crop_scale",
                scale,
                len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1,
                "(min, max) with 0 < min <= max <= 1",
            ),
            (
                "crop_ratio",
                ratio,
                len(ratio) == 2 and 0 < ratio[0] <= ratio[1],
                "(min, max) with 0 < min <= max",
            ),
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
        teacher_x = x
        if self.mode == "fixed":
            check_logit_based(distiller)
            if carried is None:
                if training:
                    raise ValueError(
                        "teaching='fixed' trains on batches (x, {'labels': y, 'teacher_logits': "
                        "z}); build them with tfkd.teacher.teaching.fixed_dataset"
                    )
                return x, x, labels
            teacher_x = PrecomputedLogits(carried)
        if not training:
            return x, teacher_x, labels
        student_x, augmented_teacher_x = self.augment_replica_batch(x, self.batch_seed(distiller))
        return student_x, (teacher_x if self.mode == "fixed" else augmented_teacher_x), labels

    # ---- explicit parameters --------------------------------------------------------------------
    def parameters(self, batch_size, seed, image_size=None):
        """Every example's augmentation parameters for one (global) batch.

        Args:
          batch_size: int (or int scalar tensor), the global batch size.
          seed: int [2] stateless seed (`batch_seed` during training).
          image_size: (height, width) of image batches; None for vectors (no crop, no flip).
        Returns:
          dict of tensors, row i for example i: "student_crop_box" float32 [batch, 4]
          normalised (y1, x1, y2, x2) and "student_flip" bool [batch] for images;
          "teacher_crop_box" and "teacher_flip" too in independent mode; "mixup_partner"
          int32 [batch] (an index into the same batch) and "mixup_weight" float32 [batch] in
          function_matching mode.
        """
        if self.mode == "fixed":
            student_seed, teacher_seed, mixup_seed = seed, None, None
        else:
            student_seed, teacher_seed, mixup_seed = augment.split_seed(seed, 3)
        parameters = {}
        views = [("student", student_seed)]
        if self.mode == "independent":
            views.append(("teacher", teacher_seed))
        if image_size is not None:
            height, width = image_size
            for role, view_seed in views:
                crop_seed, flip_seed = augment.split_seed(view_seed, 2)
                parameters[f"{role}_crop_box"] = augment.crop_boxes(
                    batch_size, crop_seed, height, width, self.crop_scale, self.crop_ratio
                )
                parameters[f"{role}_flip"] = (
                    augment.flips(batch_size, flip_seed)
                    if self.flip
                    else tf.zeros([batch_size], tf.bool)
                )
        if self.mode == "function_matching":
            weight_seed, partner_seed = augment.split_seed(mixup_seed, 2)
            parameters["mixup_weight"] = augment.mixup_weights(
                batch_size, weight_seed, self.mixup_alpha
            )
            parameters["mixup_partner"] = augment.mixup_partners(
                batch_size, partner_seed, self.mixup_partners
            )
        return parameters

    def apply(self, x, parameters):
        """(student view, teacher view) of a whole batch under given `parameters`.

        Args:
          x: float [batch, H, W, C] images or [batch, D] vectors, the batch `parameters` were
            drawn for (mixup partners index into it).
          parameters: as returned by `parameters`.
        Returns:
          Two tensors shaped like x (float32 when augmented). In fixed mode the teacher view is
          x itself, the input its carried logits were computed on.
        """
        return self._views(x, parameters, gather_batch=lambda views: views)

    def augment_replica_batch(self, x, seed):
        """`apply(x, parameters(global batch size, seed))` restricted to this replica's rows of
        the global batch; equal to the one-replica result on the concatenated batch."""
        local_size = tf.shape(x)[0]
        offset, global_size = replica_rows(local_size)
        image_size = augment.image_size(x) if x.shape.rank == 4 else None
        parameters = self.parameters(global_size, seed, image_size)
        own = {name: value[offset : offset + local_size] for name, value in parameters.items()}
        return self._views(x, own, gather_batch=gather_global_batch)

    def _views(self, x, parameters, gather_batch):
        student_x = self._view(x, parameters, "student")
        teacher_x = x if self.mode == "fixed" else student_x
        if self.mode == "independent":
            teacher_x = self._view(x, parameters, "teacher")
        if self.mode == "function_matching":
            partners = tf.gather(gather_batch(student_x), parameters["mixup_partner"])
            student_x = teacher_x = augment.mix(student_x, partners, parameters["mixup_weight"])
        return student_x, teacher_x

    @staticmethod
    def _view(x, parameters, role):
        if f"{role}_crop_box" not in parameters:
            return x
        x = augment.crop_and_resize(x, parameters[f"{role}_crop_box"])
        return augment.flip_where(x, parameters[f"{role}_flip"])

    # ---- pieces ---------------------------------------------------------------------------------
    def view(self, x, seed):
        """Inception crop then flip for images [batch, H, W, C]; other inputs unchanged."""
        if x.shape.rank != 4:
            return x
        crop_seed, flip_seed = augment.split_seed(seed, 2)
        x = augment.random_resized_crop(x, crop_seed, self.crop_scale, self.crop_ratio)
        return augment.random_flip(x, flip_seed) if self.flip else x

    def batch_seed(self, distiller):
        """int64 [2] seed of this training step, (seed, optimizer step): every step draws fresh
        augmentations, reproducibly, and every replica draws the same ones."""
        step = tf.cast(distiller.optimizer.iterations, tf.int64)
        return tf.stack([tf.constant(self.seed, tf.int64), step])


def replica_rows(local_size):
    """(offset, global batch size): this replica holds rows [offset, offset + local_size) of
    the global batch, the concatenation of the replicas' batches in replica order.

    Uneven splits (a final partial batch) are handled: the sizes are exchanged, not assumed.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tf.constant(0, local_size.dtype), local_size
    sizes = context.all_gather(tf.reshape(local_size, [1]), axis=0)  # [replicas]
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
    return tf.reduce_sum(sizes[:replica]), tf.reduce_sum(sizes)


def gather_global_batch(x):
    """The global batch [global batch, ...] from this replica's rows x [local batch, ...]."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return x
    return context.all_gather(x, axis=0)


def build(teaching):
    """None (the batch goes unchanged to both models), a mode name or a `Teaching`."""
    if teaching is None or isinstance(teaching, Teaching):
        return teaching
    if isinstance(teaching, str):
        return Teaching(teaching)
    raise ValueError(
        f"teaching must be None, one of {', '.join(MODES)} or a "
        f"tfkd.teacher.teaching.Teaching, got {teaching!r}"
    )


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
    # The base marks its own teacher_logits; an override (a method needing more from the
    # teacher) lacks the mark. No import of the base: it imports this module.
    if not getattr(type(distiller).teacher_logits, "logits_only", False):
        raise ValueError(
            f"teaching='fixed' carries only the teacher's logits, but {type(distiller).__name__} "
            "overrides teacher_logits (it needs more from the teacher); use independent, "
            "consistent or function_matching"
        )


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


def fixed_dataset(x, y, teacher_logits, batch_size, shuffle=False, seed=0, drop_remainder=False):
    """Batches for fixed teaching: (x float32 [B, ...], {"labels": int32 [B],
    "teacher_logits": float32 [B, K]}), each example keeping its own precomputed logits."""
    y = np.asarray(y).astype(np.int32)
    teacher_logits = np.asarray(teacher_logits, np.float32)
    if not len(x) == len(y) == len(teacher_logits):
        raise ValueError(
            f"x, y and teacher_logits disagree on the number of examples: "
            f"{len(x)}, {len(y)}, {len(teacher_logits)}"
        )
    dataset = tf.data.Dataset.from_tensor_slices((x, {LABELS: y, TEACHER_LOGITS: teacher_logits}))
    if shuffle:
        dataset = dataset.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.map(
        lambda inputs, targets: (convert(inputs), targets), num_parallel_calls=tf.data.AUTOTUNE
    ).prefetch(tf.data.AUTOTUNE)


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
        raise ValueError(
            f"{name}: inputs of shape {x.shape[1:]} cannot be brought to the "
            f"teacher's input shape {input_shape}; only images can be resized"
        )
    channels, target = x.shape[-1], input_shape[-1]
    if channels != target and {channels, target} != {1, 3}:
        raise ValueError(
            f"{name}: cannot convert {channels}-channel images to {target} channels "
            "(only grey-scale <-> RGB)"
        )
    converted = []
    for start in range(0, len(x), chunk_size):
        chunk = tf.convert_to_tensor(to_float(x[start : start + chunk_size]))
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
