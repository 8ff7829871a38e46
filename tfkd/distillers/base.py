"""`Distiller`: a `keras.Model` that trains a student from a frozen teacher with plain `fit`."""
import keras
import tensorflow as tf
from keras import ops

from tfkd import losses
from tfkd import teaching as teaching_modes
from tfkd.targets import build_target


def check_class_counts(student, teacher, teacher_name="teacher"):
    """Raises one clear error when student and teacher disagree on the number of classes."""
    student_shape, teacher_shape = tuple(student.output_shape), tuple(teacher.output_shape)
    if student_shape[-1] != teacher_shape[-1]:
        raise ValueError(
            f"student and {teacher_name} disagree on the number of classes: student output shape "
            f"{student_shape}, {teacher_name} output shape {teacher_shape}")


def global_mean(per_example, sample_weight=None):
    """Mean over the global batch of a [batch] tensor: per-replica sum / global batch size.

    Keras sums gradients across replicas, so dividing by the global batch (what
    `tf.nn.compute_average_loss` and Keras's own `Loss` objects do) makes 2 replicas take the
    same step as 1 replica on the same global batch.
    """
    per_example = tf.cast(per_example, tf.float32)
    if sample_weight is not None:
        per_example = per_example * tf.cast(tf.reshape(sample_weight, [-1]), tf.float32)
    return tf.nn.compute_average_loss(per_example)


@keras.saving.register_keras_serializable(package="tfkd")
class Distiller(keras.Model):
    """Knowledge distillation (Hinton et al., 2015) as a `keras.Model`.

    Per example: `(1 - alpha) * CE(y, z_s) + alpha * distance(target(z_t, y), z_s, T)`, with
    `target` a registered teacher-target transform (default: softmax(z_t / T)) and `distance` a
    registered distance (default: T^2 * KL). Every term is averaged over the global batch.

    `call` returns the student's logits, so `evaluate` and `predict` speak of the student;
    `evaluate` also reports the distillation loss, computed exactly as in training.
    Save or export `distiller.student`, never the distiller (it holds the teacher).

    `teaching` (None, a mode name or a `tfkd.teaching.Teaching`) decides what teacher and
    student see of each training batch: None hands both the batch unchanged; "fixed",
    "independent", "consistent" and "function_matching" are Beyer et al.'s (2022) modes.
    """

    loss_terms = ("loss", "student_loss", "distillation_loss")

    def __init__(self, student, teacher=None, temperature=4.0, alpha=0.9, target="temperature",
                 distance="kl", target_options=None, teaching=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.student = student
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.target = (build_target(target, temperature=temperature, **(target_options or {}))
                       if isinstance(target, str) else target)
        self.distance = losses.DISTANCES.get(distance) if isinstance(distance, str) else distance
        self.teacher = teacher
        if getattr(self.target, "needs_teacher", True):
            if teacher is None:
                raise ValueError("this teacher target needs a teacher; pass teacher=")
        if teacher is not None:
            check_class_counts(student, teacher)
            teacher.trainable = False
        self.teaching = teaching_modes.build(teaching)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.loss_terms}

    # ---- pieces a method may override -------------------------------------------------------
    def teacher_logits(self, x):
        """The frozen teacher's logits (inference mode, no gradient), or None without a teacher."""
        if isinstance(x, teaching_modes.PrecomputedLogits):  # fixed teaching: computed once
            return ops.stop_gradient(ops.cast(x.logits, "float32"))
        if self.teacher is None or not getattr(self.target, "needs_teacher", True):
            return None
        return ops.stop_gradient(self.teacher(x, training=False))

    def prepare_batch(self, x, y, training):
        """Returns (student input, teacher input, labels); augmentation hooks go here."""
        if self.teaching is not None:
            return self.teaching.prepare_batch(self, x, y, training)
        return x, x, y

    def compute_terms(self, x, y, student_logits, teacher_logits, training):
        """Per-example loss terms, each [batch]; must include every name in `loss_terms`."""
        student_loss = losses.cross_entropy(y, student_logits)
        target = self.target(teacher_logits, y)
        distillation_loss = self.distance(target, student_logits, self.temperature)
        loss = (1.0 - self.alpha) * student_loss + self.alpha * distillation_loss
        return {"loss": loss, "student_loss": student_loss, "distillation_loss": distillation_loss}

    # ---- Keras plumbing ------------------------------------------------------------------------
    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    @property
    def metrics(self):
        # Keras adds its own "loss" tracker on compile; ours reports the distillation loss.
        own = set(map(id, self.trackers.values()))
        return [m for m in super().metrics if m.name != "loss" or id(m) in own]

    def total_loss(self, terms, sample_weight):
        """The scalar to differentiate: the global-batch mean of `terms["loss"]` plus the
        student's regularisation losses, divided by the replica count since Keras sums
        gradients across replicas."""
        loss = global_mean(terms["loss"], sample_weight)
        if self.student.losses:
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            loss += ops.sum(self.student.losses) / replicas
        return loss

    def _forward(self, data, training):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        student_x, teacher_x, y = self.prepare_batch(x, y, training)
        teacher_logits = self.teacher_logits(teacher_x)

        def loss_fn():
            student_logits = self.student(student_x, training=training)
            terms = self.compute_terms(student_x, y, student_logits, teacher_logits, training)
            return self.total_loss(terms, sample_weight), (y, student_logits, terms,
                                                           sample_weight)

        return loss_fn

    def train_step(self, data):
        loss_fn = self._forward(data, training=True)
        with tf.GradientTape() as tape:
            loss, outputs = loss_fn()
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return self._report(*outputs)

    def test_step(self, data):
        return self._report(*self._forward(data, training=False)()[1])

    def _report(self, y, student_logits, terms, sample_weight):
        batch = ops.cast(ops.shape(student_logits)[0], "float32")
        for name, tracker in self.trackers.items():
            value = terms[name]
            if sample_weight is not None:
                value = value * ops.cast(ops.reshape(sample_weight, [-1]), value.dtype)
            # A batch-size weight makes the cross-replica aggregate the global-batch mean.
            tracker.update_state(ops.mean(value) if len(value.shape) else value, sample_weight=batch)
        return self.compute_metrics(None, y, student_logits, sample_weight)

    def get_config(self):
        raise NotImplementedError(
            "a Distiller is not saved whole; save or export `distiller.student` instead")
