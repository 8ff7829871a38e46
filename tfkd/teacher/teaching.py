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
or `distiller.teaching = Teaching(...)` before `compile`): the distiller's `prepare_batch` asks
its `views` what each model sees. The augmentation runs inside `train_step`, so teacher and
student receive bit-identical tensors where the mode says so. Evaluation sees un-augmented inputs.

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

`fixed` needs batches carrying the teacher's logits (`tfkd.teacher.batch_format`): build them
with `tfkd.teacher.fixed.fixed_dataset(x, y, teacher_predictions(teacher, x), batch_size)`.
"""

import dataclasses

import tensorflow as tf

from tfkd import augment
from tfkd.global_batch import gather_global_batch, replica_rows

MODES = ("fixed", "independent", "consistent", "function_matching")


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
    def views(self, distiller, x, stored, training):
        """(student input, teacher input) of one batch; see the module docstring.

        `stored` is the `tfkd.teacher.batch_format.StoredOutputs` the batch carries, or None.
        In fixed mode they are the teacher input (the logits were computed on the clean
        inputs); the other modes augment the teacher's view, which no stored output was made on.
        """
        if stored is None:
            if self.mode == "fixed" and training:
                raise ValueError(
                    "teaching='fixed' trains on batches (x, {'labels': y, 'teacher_logits': "
                    "z}); build them with tfkd.teacher.fixed.fixed_dataset"
                )
        elif self.mode != "fixed" and training:
            raise ValueError(
                f"teaching={self.mode!r} augments the teacher's view of every batch, but the "
                "batches carry stored teacher outputs; use teaching='fixed', or batches "
                "without stored outputs"
            )
        teacher_x = x if stored is None else stored
        if not training:
            return x, teacher_x
        student_x, augmented_teacher_x = self.augment_replica_batch(x, self.batch_seed(distiller))
        return student_x, (teacher_x if self.mode == "fixed" else augmented_teacher_x)

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
