"""`Distiller`: a `keras.Model` that trains a student from a frozen teacher with plain `fit`."""
import keras
import tensorflow as tf
from keras import ops

from tfkd import losses
from tfkd import teaching as teaching_modes
from tfkd.targets import build_target
from tfkd.teachers import known_output_shape


def num_classes(model):
    """The number of logits `model` gives, or None when it cannot tell without data."""
    shape = known_output_shape(model)
    return None if shape is None or shape[-1] is None else int(shape[-1])


def check_class_counts(student, teacher, teacher_name="teacher", student_name="student"):
    """Raises one clear error when student and teacher disagree on the number of classes.

    Either model may be functional, Sequential or subclassed; a model that cannot report its
    output shape yet (a subclassed model never called) passes here and is checked on the
    logits of the first step (`check_logits`).
    """
    _compare_shapes(known_output_shape(student), known_output_shape(teacher), student, teacher,
                    teacher_name, student_name)


def check_logits(student_logits, teacher_logits, student, teacher, teacher_name="teacher",
                 student_name="student"):
    """`check_class_counts` on the static shapes of one step's logits [..., batch, classes]."""
    _compare_shapes((None, student_logits.shape[-1]), (None, teacher_logits.shape[-1]), student,
                    teacher, teacher_name, student_name)


def _compare_shapes(student_shape, teacher_shape, student, teacher, teacher_name, student_name):
    if student_shape is None or teacher_shape is None or None in (student_shape[-1],
                                                                  teacher_shape[-1]):
        return
    if student_shape[-1] != teacher_shape[-1]:
        raise ValueError(
            f"{student_name} and {teacher_name} disagree on the number of classes: "
            f"{student_name}{_quoted_name(student)} output shape {student_shape}, "
            f"{teacher_name}{_quoted_name(teacher)} output shape {teacher_shape}")


def _quoted_name(model):
    # Precomputed teacher logits (fixed teaching) come without a model.
    return f" {model.name!r}" if model is not None else ""


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


def per_worker_logs(logs):
    """`fit`'s step logs, shaped for the strategy in use.

    Keras 3.15 averages step logs across MultiWorkerMirroredStrategy workers with
    `strategy.reduce("MEAN", value, axis=0)`, which fails on scalars (tensorflow#72388); there
    every value gets a length-1 batch axis, which that reduction turns back into the scalar.
    """
    strategy = tf.distribute.get_strategy()
    if not (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.extended._in_multi_worker_mode()):
        return logs
    return {name: ops.reshape(value, [1]) for name, value in logs.items()}


# A key of `compute_terms`' result: a batch-level scalar term added to the objective.
BATCH_LOSS = "batch_loss"


class EpochCounter(keras.callbacks.Callback):
    """Writes the 0-based epoch into a variable read by `train_step`."""

    def __init__(self, variable):
        super().__init__()
        self.variable = variable

    def on_epoch_begin(self, epoch, logs=None):
        self.variable.assign(epoch)


@keras.saving.register_keras_serializable(package="tfkd")
class Distiller(keras.Model):
    """Knowledge distillation (Hinton et al., 2015) as a `keras.Model`.

    Per example: `(1 - alpha) * CE(y, z_s) + alpha * distance(target(z_t, y), z_s, T)`, with
    `target` a registered teacher-target transform (default: softmax(z_t / T)) and `distance` a
    registered distance (default: T^2 * KL). Every term is averaged over the global batch.

    Student and teacher may be functional, Sequential or subclassed Keras models. The distiller
    counts as built once they are, so `fit` takes any standard callback (BackupAndRestore,
    ModelCheckpoint(save_weights_only=True), EarlyStopping(restore_best_weights=True), ...);
    `sample_weight` follows Keras's convention: the weighted sum over the batch size.

    `call` returns the student's logits, so `evaluate` and `predict` speak of the student;
    `evaluate` also reports the distillation loss, computed exactly as in training.
    Save or export `distiller.student`, never the distiller (it holds the teacher).

    `teaching` (None, a mode name or a `tfkd.teaching.Teaching`) decides what teacher and
    student see of each training batch: None hands both the batch unchanged; "fixed",
    "independent", "consistent" and "function_matching" are Beyer et al.'s (2022) modes.
    """

    loss_terms = ("loss", "student_loss", "distillation_loss")
    # True: `self.epoch` (0-based, a non-trainable variable) is set by `fit` at every epoch.
    counts_epochs = False

    def __init__(self, student: keras.Model, teacher: keras.Model | None = None,
                 temperature: float = 4.0, alpha: float = 0.9, target: str = "temperature",
                 distance: str = "kl", target_options: dict | None = None,
                 teaching: str | None = None, **kwargs):
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
        # target None: the method computes its own terms from its teachers (multi-teacher).
        if self.target is not None and getattr(self.target, "needs_teacher", True):
            if teacher is None:
                raise ValueError("this teacher target needs a teacher; pass teacher=")
        if teacher is not None:
            check_class_counts(student, teacher)
            teacher.trainable = False
        self.teaching = teaching_modes.build(teaching)
        self.set_loss_terms(self.loss_terms)
        if self.counts_epochs:
            self.epoch = keras.Variable(0, dtype="int32", trainable=False, name="epoch")

    def set_loss_terms(self, names):
        """The reported terms: one global-batch mean tracker per name (`loss` first)."""
        self.loss_terms = tuple(names)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.loss_terms}

    # ---- pieces a method may override -------------------------------------------------------
    def teacher_logits(self, x):
        """The frozen teacher's logits (inference mode, no gradient), or None without a teacher."""
        if isinstance(x, teaching_modes.PrecomputedLogits):  # fixed teaching: computed once
            return ops.stop_gradient(ops.cast(x.logits, "float32"))
        if self.teacher is None or not getattr(self.target, "needs_teacher", True):
            return None
        return ops.stop_gradient(self.teacher(x, training=False))

    teacher_logits.logits_only = True  # read by tfkd.teaching.check_logit_based

    def prepare_batch(self, x, y, training):
        """Returns (student input, teacher input, labels); augmentation hooks go here."""
        if self.teaching is not None:
            return self.teaching.prepare_batch(self, x, y, training)
        return x, x, y

    def compute_terms(self, x, y, student_logits, teacher_logits, training):
        """Per-example loss terms, each [batch], or batch-level scalars; must include every name
        in `loss_terms`. `terms["loss"]` [batch] is averaged over the global batch; a method
        whose equation is a batch statistic adds it as `terms["batch_loss"]` (computed on the
        global batch, see `tfkd.losses.dist_loss`). Methods with `needs_features` also receive
        `features=(student features, teacher features)`."""
        student_loss = losses.cross_entropy(y, student_logits)
        target = self.target(teacher_logits, y)
        distillation_loss = self.distance(target, student_logits, self.temperature)
        loss = (1.0 - self.alpha) * student_loss + self.alpha * distillation_loss
        return {"loss": loss, "student_loss": student_loss, "distillation_loss": distillation_loss}

    # ---- Keras plumbing ------------------------------------------------------------------------
    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def input_models(self):
        """The models that read the inputs: the student and the teacher(s)."""
        return [self.student] + ([self.teacher] if self.teacher is not None else [])

    def named_teachers(self):
        """(teacher, its name in messages) for every teacher."""
        return [(self.teacher, "teacher")] if self.teacher is not None else []

    @property
    def built(self):
        # A distiller's own state (metrics, counters) is made in __init__; it is built as soon
        # as the models it holds are, which `fit` with BackupAndRestore checks before step 1.
        if self.__dict__.get("_distiller_built", False):
            return True
        if "_tracker" not in self.__dict__:  # Layer.__init__ has not run yet
            return False
        layers = self.layers
        return bool(layers) and all(layer.built for layer in layers)

    @built.setter
    def built(self, value):
        self.__dict__["_distiller_built"] = bool(value)

    def build(self, input_shape):
        """Builds the student and teacher(s) on `input_shape` (None, ...) by one symbolic call,
        then checks the class counts they could not report before."""
        for model in self.input_models():
            if not model.built:
                model(keras.KerasTensor(tuple(input_shape)))
        for teacher, name in self.named_teachers():
            check_class_counts(self.student, teacher, name)

    @property
    def metrics(self):
        # Keras adds its own "loss" tracker on compile; ours reports the distillation loss.
        own = set(map(id, self.trackers.values()))
        return [m for m in super().metrics if m.name != "loss" or id(m) in own]

    def total_loss(self, terms, sample_weight):
        """The scalar to differentiate: the global-batch mean of `terms["loss"]`, plus
        `terms["batch_loss"]` (a batch-level scalar already computed on the global batch, e.g.
        DIST's correlations) and the student's regularisation losses, each of the last two
        divided by the replica count since Keras sums gradients across replicas."""
        loss = global_mean(terms["loss"], sample_weight)
        if BATCH_LOSS in terms:
            loss += losses.replica_scaled(terms[BATCH_LOSS])
        if self.student.losses:
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            loss += ops.sum(self.student.losses) / replicas
        return loss

    def teacher_outputs(self, x):
        """(teacher logits or None, teacher features or None); features only where the method
        reads them (`needs_features`)."""
        return self.teacher_logits(x), None

    def student_outputs(self, x, training):
        """(student logits, student features or None)."""
        return self.student(x, training=training), None

    def _forward(self, data, training):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        student_x, teacher_x, y = self.prepare_batch(x, y, training)
        teacher_logits, teacher_features = self.teacher_outputs(teacher_x)

        def loss_fn():
            student_logits, student_features = self.student_outputs(student_x, training)
            if teacher_logits is not None:  # shapes are static: free after the first trace
                self.check_step_logits(student_logits, teacher_logits)
            if student_features is None:
                terms = self.compute_terms(student_x, y, student_logits, teacher_logits, training)
            else:
                terms = self.compute_terms(student_x, y, student_logits, teacher_logits, training,
                                           features=(student_features, teacher_features))
            return self.total_loss(terms, sample_weight), (y, student_logits, terms,
                                                           sample_weight)

        return loss_fn

    def check_step_logits(self, student_logits, teacher_logits):
        """`check_logits` for this distiller's teacher(s); teacher_logits [..., batch, classes]."""
        check_logits(student_logits, teacher_logits, self.student, self.teacher)

    def fit(self, *args, callbacks=None, **kwargs):
        """`keras.Model.fit`, plus the callback that tells `train_step` the epoch when the
        method reads it (`counts_epochs`)."""
        if self.counts_epochs:
            callbacks = list(callbacks or []) + [EpochCounter(self.epoch)]
        return super().fit(*args, callbacks=callbacks, **kwargs)

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
            if sample_weight is not None and len(value.shape):
                value = value * ops.cast(ops.reshape(sample_weight, [-1]), value.dtype)
            value = ops.mean(value) if len(value.shape) else value
            if name == "loss" and BATCH_LOSS in terms:
                value = value + terms[BATCH_LOSS]
            # A batch-size weight makes the cross-replica aggregate the global-batch mean.
            tracker.update_state(value, sample_weight=batch)
        return per_worker_logs(self.compute_metrics(None, y, student_logits, sample_weight))

    def get_config(self):
        raise NotImplementedError(
            "a Distiller is not saved whole; save or export `distiller.student` instead")
