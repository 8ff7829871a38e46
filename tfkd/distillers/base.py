"""`Distiller`: a `keras.Model` that trains a student from a frozen teacher with plain `fit`."""

import keras
import tensorflow as tf
from keras import ops

from tfkd import losses
from tfkd.global_batch import ElementWeights
from tfkd.methods import Option
from tfkd.targets import TemperatureSoftmax, build_target, standardize_logits
from tfkd.teacher import batch_format
from tfkd.teacher import teaching as teaching_modes
from tfkd.teacher.loading import check_class_counts, check_logits

try:
    from keras.src.backend.common.masking import set_keras_mask as _set_keras_mask
except ImportError:  # moved in a later Keras: a graph tensor takes the attribute itself

    def _set_keras_mask(tensor, mask):
        tensor._keras_mask = mask


def per_worker_logs(logs):
    """`fit`'s step logs, shaped for the strategy in use.

    Keras 3.15 averages step logs across MultiWorkerMirroredStrategy workers with
    `strategy.reduce("MEAN", value, axis=0)`, which fails on scalars (tensorflow#72388); there
    every value gets a length-1 batch axis, which that reduction turns back into the scalar.
    """
    strategy = tf.distribute.get_strategy()
    if not (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and strategy.extended._in_multi_worker_mode()
    ):
        return logs
    return {name: ops.reshape(value, [1]) for name, value in logs.items()}


# A key of `compute_terms`' result: a batch-level scalar term added to the objective.
BATCH_LOSS = "batch_loss"

# The option of every method whose distillation term compares temperature softmaxes of logits.
LOGIT_STANDARDIZATION = Option(
    "logit_standardization",
    False,
    "kd, dkd, aver, ebkd, ca_mkd: z-score the teacher's and the "
    "student's logits (each vector minus its mean, over its standard deviation) before the "
    "temperature softmax of the distillation term (Sun et al. 2024).",
)


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

    Per element: `(1 - alpha) * CE(y, z_s) + alpha * distance(target(z_t, y), z_s, T)`, with
    `target` a registered teacher-target transform (default: softmax(z_t / T)) and `distance` a
    registered distance (default: T^2 * KL); or, with `divergence` "reverse_kl" or "jsd"
    (`jsd_beta`), `alpha * tfkd.losses.divergence(...)(z_t, z_s, T)` as the distillation term.
    `logit_standardization=True` z-scores z_t and z_s before the distillation term
    (`tfkd.targets.standardize_logits`).

    Elements are examples for classifiers ([batch, K] logits) and tokens for sequence models
    ([batch, time, K]). Every term is averaged over the global batch: divided by the global
    number of examples for classifiers, by the global number of valid tokens for sequences,
    the valid tokens given by `sample_weight` [batch, time], a `padding_mask` input or labels
    of -100 (`ElementWeights`). `fit` and `evaluate` then report token accuracy over valid
    tokens.

    Student and teacher may be functional, Sequential or subclassed Keras models. The distiller
    counts as built once they are, so `fit` takes any standard callback (BackupAndRestore,
    ModelCheckpoint(save_weights_only=True), EarlyStopping(restore_best_weights=True), ...);
    A classifier's `sample_weight` [batch] follows Keras's convention: the weighted sum over the
    batch size.

    `call` returns the student's logits, so `evaluate` and `predict` speak of the student;
    `evaluate` also reports the distillation loss, computed exactly as in training.
    Save or export `distiller.student`, never the distiller (it holds the teacher).

    `teaching` (None, a mode name or a `tfkd.teacher.teaching.Teaching`) decides what teacher and
    student see of each training batch: None hands both the batch unchanged; "fixed",
    "independent", "consistent" and "function_matching" are Beyer et al.'s (2022) modes.

    Batches are `(inputs, labels)` or carry stored teacher outputs (`tfkd.teacher.batch_format`:
    fixed teaching, the cache, replay); `prepare_batch` reads both, for one teacher and K alike,
    and stored outputs stand in for the teachers' forward pass.
    """

    loss_terms = ("loss", "student_loss", "distillation_loss")
    # True: `self.epoch` (0-based, a non-trainable variable) is set by `fit` at every epoch.
    counts_epochs = False
    # True: `compute_terms` also receives `mask=` (float [...] in {0, 1}, or None: every element
    # valid), for batch-level statistics that must leave padding out (DIST).
    reads_mask = False

    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model | None = None,
        temperature: float = 4.0,
        alpha: float = 0.9,
        target: str = "temperature",
        distance: str = "kl",
        target_options: dict | None = None,
        teaching: str | None = None,
        logit_standardization: bool = False,
        divergence: str = "forward_kl",
        jsd_beta: float = 0.5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.student = student
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.target = (
            build_target(target, temperature=temperature, **(target_options or {}))
            if isinstance(target, str)
            else target
        )
        self.distance = losses.DISTANCES.get(distance) if isinstance(distance, str) else distance
        self.logit_standardization = bool(logit_standardization)
        # forward_kl is the target + distance path (Hinton's T^2 KL with the default target);
        # the other divergences read the teacher's logits directly.
        self.divergence = None
        if divergence != "forward_kl":
            if not 0.0 <= jsd_beta <= 1.0:
                raise ValueError(f"jsd_beta must be in [0, 1], got {jsd_beta}")
            if not isinstance(self.target, TemperatureSoftmax):
                raise ValueError(
                    f"divergence {divergence!r} compares the teacher's and the "
                    "student's temperature softmaxes; it takes no teacher target "
                    "but 'temperature'"
                )
            self.divergence = losses.divergence(divergence, jsd_beta=jsd_beta)
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
        if self.teacher is None or not getattr(self.target, "needs_teacher", True):
            return None
        return ops.stop_gradient(self.teacher(x, training=False))

    # Stored logits stand in for this method's teacher: an override (a method reading more
    # from its teacher, as FitNets' hint layer) lacks the mark and refuses them.
    teacher_logits.logits_only = True

    # True: the method reads its teachers' feature maps (from stored outputs too).
    reads_teacher_features = False

    def prepare_batch(self, x, y, training):
        """(student input, teacher input, labels) of one batch in the format of
        `tfkd.teacher.batch_format`, whichever source made it: the teacher input is the inputs
        (the teacher runs) or the `StoredOutputs` the batch carries; the teaching mode, if any,
        decides the views."""
        labels, stored = batch_format.unpack(y)
        if self.teaching is None:
            return x, (x if stored is None else stored), labels
        student_x, teacher_x = self.teaching.views(self, x, stored, training)
        return student_x, teacher_x, labels

    def stored_outputs(self, stored):
        """(teacher logits, teacher features) from the `StoredOutputs` a batch carries, in the
        layout `teacher_outputs` gives (`arrange_teacher_outputs`), for one teacher and K."""
        name = type(self).__name__
        if not getattr(type(self).teacher_logits, "logits_only", False):
            raise ValueError(
                f"the batches carry the teacher's stored logits (teaching='fixed', a teacher "
                f"cache or replay), but {name} overrides teacher_logits (it needs more from the "
                "teacher); use batches without stored outputs (independent, consistent or "
                "function_matching teaching)"
            )
        count = max(len(self.named_teachers()), 1)
        if len(stored.logits) != count:
            raise ValueError(
                f"the batches carry {len(stored.logits)} teachers' logits but {name} has "
                f"{count} teacher{'s' if count > 1 else ''}"
            )
        logits = [ops.stop_gradient(ops.cast(z, "float32")) for z in stored.logits]
        features = None
        if self.reads_teacher_features:
            if stored.features is None:
                raise ValueError(
                    f"{name} uses teacher features but the batches carry logits only; store "
                    "outputs=('logits', 'features')"
                )
            features = [ops.stop_gradient(ops.cast(f, "float32")) for f in stored.features]
        return self.arrange_teacher_outputs(logits, features)

    def arrange_teacher_outputs(self, logits, features):
        """K teachers' logits and features (lists, or None) as `compute_terms` reads them: one
        teacher's [B, ..., C] here; a multi-teacher method stacks them."""
        return logits[0], None if features is None else features[0]

    def compute_terms(self, x, y, student_logits, teacher_logits, training):
        """Per-element loss terms, each [...] (the leading shape of the logits: [batch], or
        [batch, time] for sequences), or batch-level scalars; must include every name in
        `loss_terms`. `terms["loss"]` is averaged over the global batch (`ElementWeights`); a
        method whose equation is a batch statistic adds it as `terms["batch_loss"]` (computed
        on the global batch, see `gather_global_batch`). `y` holds the labels of the leading
        shape, those of -100 replaced by 0 (their terms are masked out). Methods with
        `needs_features` also receive `features=(student features, teacher features)`, methods
        with `reads_mask` `mask=` (the valid elements)."""
        student_loss = losses.cross_entropy(y, student_logits)
        teacher_logits, distilled_logits = self.distillation_logits(teacher_logits, student_logits)
        if self.divergence is not None:
            distillation_loss = self.divergence(teacher_logits, distilled_logits, self.temperature)
        else:
            target = self.target(teacher_logits, y)
            distillation_loss = self.distance(target, distilled_logits, self.temperature)
        loss = (1.0 - self.alpha) * student_loss + self.alpha * distillation_loss
        return {"loss": loss, "student_loss": student_loss, "distillation_loss": distillation_loss}

    def distillation_logits(self, teacher_logits, student_logits):
        """(teacher logits, student logits) as the distillation term reads them: z-scored over
        the classes with `logit_standardization` (teacher logits may be [K, ..., C] for several
        teachers, or None), unchanged otherwise."""
        if not self.logit_standardization:
            return teacher_logits, student_logits
        if teacher_logits is not None:
            teacher_logits = standardize_logits(teacher_logits)
        return teacher_logits, standardize_logits(student_logits)

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

    def total_loss(self, terms, weights):
        """The scalar to differentiate: the global mean of `terms["loss"]` [...] under `weights`
        (an `ElementWeights`, or a Keras `sample_weight`), plus `terms["batch_loss"]` (a
        batch-level scalar already computed on the global batch, e.g. DIST's correlations) and
        the student's regularisation losses, each of the last two divided by the replica count
        since Keras sums gradients across replicas."""
        if not isinstance(weights, ElementWeights):
            weights = ElementWeights(weights=weights, sample_weight=weights)
        loss = weights.global_mean(terms["loss"])
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
        if isinstance(teacher_x, batch_format.StoredOutputs):
            teacher_logits, teacher_features = self.stored_outputs(teacher_x)
        else:
            teacher_logits, teacher_features = self.teacher_outputs(teacher_x)

        def loss_fn():
            student_logits, student_features = self.student_outputs(student_x, training)
            if teacher_logits is not None:  # shapes are static: free after the first trace
                self.check_step_logits(student_logits, teacher_logits)
            weights, labels = ElementWeights.from_batch(student_x, y, sample_weight, student_logits)
            extra = {"mask": weights.mask} if self.reads_mask else {}
            if student_features is not None:
                extra["features"] = (student_features, teacher_features)
            terms = self.compute_terms(
                student_x, labels, student_logits, teacher_logits, training, **extra
            )
            return self.total_loss(terms, weights), (labels, student_logits, terms, weights)

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

    def _report(self, y, student_logits, terms, weights):
        batch = ops.cast(ops.shape(student_logits)[0], "float32")
        for name, tracker in self.trackers.items():
            value = terms[name]
            if len(value.shape):
                # Weighted by this replica's divisor, the metric's aggregate over replicas and
                # batches is the global mean the loss is (per valid token for sequences).
                value, weight = weights.local_mean(value)
            else:
                weight = batch
            if name == "loss" and BATCH_LOSS in terms:
                value = value + terms[BATCH_LOSS]
            tracker.update_state(value, sample_weight=weight)
        if weights.mask is not None:
            # Sequences: token accuracy and the like over the valid tokens only. Keras gives
            # `sample_weight` to `weighted_metrics` alone; every compiled metric reads the
            # prediction's Keras mask.
            student_logits = tf.identity(student_logits)
            _set_keras_mask(student_logits, tf.cast(weights.mask, tf.bool))
        return per_worker_logs(self.compute_metrics(None, y, student_logits, weights.sample_weight))

    def get_config(self):
        raise NotImplementedError(
            "a Distiller is not saved whole; save or export `distiller.student` instead"
        )
