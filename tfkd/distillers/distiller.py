"""`Distiller`: a `keras.Model` that trains a student from a frozen teacher with plain `fit`."""

import keras
import tensorflow as tf
from keras import ops

from tfkd import losses
from tfkd.methods import Option
from tfkd.targets import TemperatureSoftmax, build_target, standardize_logits
from tfkd.teacher import teaching as teaching_modes
from tfkd.teacher.loading import known_output_shape

try:
    from keras.src.backend.common.masking import set_keras_mask as _set_keras_mask
except ImportError:  # moved in a later Keras: a graph tensor takes the attribute itself

    def _set_keras_mask(tensor, mask):
        tensor._keras_mask = mask


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
    _compare_shapes(
        known_output_shape(student),
        known_output_shape(teacher),
        student,
        teacher,
        teacher_name,
        student_name,
    )


def check_logits(
    student_logits, teacher_logits, student, teacher, teacher_name="teacher", student_name="student"
):
    """`check_class_counts` on the static shapes of one step's logits [..., batch, classes]."""
    _compare_shapes(
        (None, student_logits.shape[-1]),
        (None, teacher_logits.shape[-1]),
        student,
        teacher,
        teacher_name,
        student_name,
    )


def _compare_shapes(student_shape, teacher_shape, student, teacher, teacher_name, student_name):
    if (
        student_shape is None
        or teacher_shape is None
        or None in (student_shape[-1], teacher_shape[-1])
    ):
        return
    if student_shape[-1] != teacher_shape[-1]:
        raise ValueError(
            f"{student_name} and {teacher_name} disagree on the number of classes: "
            f"{student_name}{_quoted_name(student)} output shape {student_shape}, "
            f"{teacher_name}{_quoted_name(teacher)} output shape {teacher_shape}"
        )


def _quoted_name(model):
    # Precomputed teacher logits (fixed teaching) come without a model.
    return f" {model.name!r}" if model is not None else ""


# ---- reduction over the elements of the global batch -----------------------------------------
# Labels equal to this are not trained on (Hugging Face's and TRL's convention for sequences).
IGNORE_LABEL = -100


def _global_sum(value):
    """The sum of a per-replica scalar over the replicas in sync (unchanged outside a replica
    context with more than one replica). Reads counts of valid elements: no gradient."""
    value = tf.stop_gradient(value)
    if tf.distribute.in_cross_replica_context():
        return value
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def gather_global_batch(value):
    """`value` [local batch, ...] -> [global batch, ...] inside a replica context with more than
    one replica (gradients flow back to each replica's own slice); unchanged otherwise.

    For batch-level statistics (DIST's per-class correlations), which a distiller computes on
    the global batch and passes to the pure loss; the loss then enters the objective through
    `tfkd.losses.replica_scaled`.
    """
    if value is None or tf.distribute.in_cross_replica_context():
        return value
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_gather(value, axis=0)


def _to_rank(weights, rank):
    """`weights` of shape [batch], [batch, 1] or the full leading shape, as a tensor of `rank`
    axes that broadcasts against it; None if it cannot."""
    weights = tf.cast(weights, tf.float32)
    have = len(weights.shape)
    if have == rank + 1 and weights.shape[-1] == 1:
        return tf.squeeze(weights, -1)
    if have > rank:
        return tf.reshape(weights, [-1]) if rank == 1 else None
    return (
        tf.reshape(weights, tf.concat([tf.shape(weights), tf.ones([rank - have], tf.int32)], 0))
        if have < rank
        else weights
    )


def _covers(shape, leading):
    """Whether a weight or mask of `shape` gives one value per element of the `leading` shape
    (rather than one per example, as [batch] or [batch, 1] do)."""
    shape = tuple(shape)
    if len(shape) == len(leading) + 1 and shape[-1] == 1:
        shape = shape[:-1]
    return len(shape) == len(leading) and all(
        a == b or (a is None and b != 1) or (b is None and a != 1) for a, b in zip(shape, leading)
    )


class ElementWeights:
    """How one batch's per-element terms `[...]` (the leading shape of the student's logits) are
    reduced to the scalar that is differentiated and reported.

    Two cases, so that classifiers keep Keras's and tfkd's first convention exactly:

    * no mask (a classifier, or a sequence with neither padding nor ignored labels): the
      weighted sum divided by the global number of elements (`tf.nn.compute_average_loss`),
      `sample_weight` [batch] scaling each example as Keras's `sum_over_batch_size` does;
    * a mask (a sequence with `sample_weight` [batch, time], a `padding_mask` input or labels
      of -100): the weighted sum divided by the global sum of the weights across replicas,
      i.e. by the global number of valid tokens. A per-example `sample_weight` [batch] still
      scales its sequence's tokens without entering the divisor.

    Attributes:
      weights: float [...] per-element weights of the numerator (None: every element 1).
      mask: float [...] in {0, 1}, the valid elements (None: every element valid).
      normalizer: float scalar, this replica's divisor (None in the first case).
      sample_weight: what the compiled metrics receive as `sample_weight`.
    """

    def __init__(self, weights=None, mask=None, normalizer=None, sample_weight=None):
        self.weights, self.mask, self.normalizer = weights, mask, normalizer
        self.sample_weight = sample_weight

    @classmethod
    def from_batch(cls, inputs, labels, sample_weight, logits):
        """The weights of one batch; returns (weights, labels made safe for cross-entropy).

        Per-token weights (outputs [batch, time, K], rank >= 2 before the classes) come from, in
        this order: `sample_weight` of the full leading shape; else the `padding_mask` entry of
        a dict input (KerasHub's preprocessors); and always from the labels, those equal to -100
        masked out and replaced by 0 so that cross-entropy and every target can read them.
        Classifier outputs [batch, K] read `sample_weight` only, as Keras does.
        """
        rank = len(logits.shape) - 1
        if rank < 2:
            return cls(weights=sample_weight, sample_weight=sample_weight), labels
        masks = []
        if (
            labels is not None
            and not isinstance(labels, dict)
            and tf.as_dtype(getattr(labels, "dtype", tf.float32)).is_integer
        ):
            labels = losses.leading_labels(labels, logits)
            if len(labels.shape) == rank:
                ignored = tf.equal(labels, IGNORE_LABEL)
                masks.append(1.0 - tf.cast(ignored, tf.float32))
                labels = tf.where(ignored, tf.zeros_like(labels), labels)
        per_token = None
        leading = tuple(logits.shape[:-1])
        if sample_weight is not None and _covers(sample_weight.shape, leading):
            per_token = _to_rank(sample_weight, rank)
        padding = inputs.get("padding_mask") if isinstance(inputs, dict) else None
        if per_token is None and padding is not None and _covers(padding.shape, leading):
            masks.append(_to_rank(padding, rank))
        mask = None
        for part in masks:
            mask = part if mask is None else mask * part
        if per_token is not None:
            weights = per_token if mask is None else per_token * mask
            mask = tf.cast(weights > 0, tf.float32)
            normalizer = tf.reduce_sum(weights)
        elif mask is not None:
            weights = mask if sample_weight is None else _to_rank(sample_weight, rank) * mask
            normalizer = tf.reduce_sum(mask)
        else:
            return cls(weights=sample_weight, sample_weight=sample_weight), labels
        return cls(weights, mask, normalizer, sample_weight=weights), labels

    def _weighted(self, values):
        values = tf.cast(values, tf.float32)
        if self.weights is None:
            return values
        weights = _to_rank(self.weights, len(values.shape))
        return values if weights is None else values * weights

    def global_mean(self, values):
        """The scalar to differentiate from per-element `values` [...]: the weighted sum over
        this replica divided by the global divisor, so that Keras's sum of the replicas'
        gradients is the gradient of the global mean (2 replicas take the step 1 replica
        takes)."""
        weighted = self._weighted(values)
        if self.normalizer is None:
            return tf.nn.compute_average_loss(tf.reshape(weighted, [-1]))
        return tf.math.divide_no_nan(tf.reduce_sum(weighted), _global_sum(self.normalizer))

    def local_mean(self, values):
        """(this replica's weighted mean of `values` [...], its weight): what a `Mean` metric
        updated on every replica and batch turns into the global mean."""
        weighted = self._weighted(values)
        if self.normalizer is None:
            return tf.reduce_mean(weighted), tf.cast(tf.size(weighted), tf.float32)
        return tf.math.divide_no_nan(tf.reduce_sum(weighted), self.normalizer), self.normalizer


def global_mean(per_example, sample_weight=None):
    """Mean over the global batch of per-element values [batch] or [batch, time]: the weighted
    sum over this replica divided by the global number of elements (no `sample_weight`, or a
    per-example one as Keras's `sum_over_batch_size`) or by the global sum of a per-token
    `sample_weight` [batch, time] (the mask of valid tokens).

    Keras sums gradients across replicas, so dividing by a global quantity (what
    `tf.nn.compute_average_loss` and Keras's own `Loss` objects do) makes 2 replicas take the
    same step as 1 replica on the same global batch.
    """
    per_example = tf.convert_to_tensor(per_example)
    if (
        sample_weight is not None
        and len(per_example.shape) >= 2
        and len(sample_weight.shape) >= len(per_example.shape)
    ):
        weights = _to_rank(sample_weight, len(per_example.shape))
        return ElementWeights(weights, normalizer=tf.reduce_sum(weights)).global_mean(per_example)
    return ElementWeights(weights=sample_weight).global_mean(per_example)


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
        if isinstance(x, teaching_modes.PrecomputedLogits):  # fixed teaching: computed once
            return ops.stop_gradient(ops.cast(x.logits, "float32"))
        if self.teacher is None or not getattr(self.target, "needs_teacher", True):
            return None
        return ops.stop_gradient(self.teacher(x, training=False))

    teacher_logits.logits_only = True  # read by tfkd.teacher.teaching.check_logit_based

    def prepare_batch(self, x, y, training):
        """Returns (student input, teacher input, labels); augmentation hooks go here."""
        if self.teaching is not None:
            return self.teaching.prepare_batch(self, x, y, training)
        return x, x, y

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
