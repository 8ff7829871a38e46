"""Several causal-LM teachers per token: AVER, EBKD and CA-MKD weights on next-token distributions.

    distiller = MultiTeacherCausalLMDistiller(student, [teacher_a, teacher_b], weighting="ca_mkd")
    distiller.fit(data.dataset("train", 32, shuffle=True), epochs=3)
    # or from one TopKStore per teacher, the teachers out of memory:
    distiller = MultiTeacherCausalLMDistiller(student, None, weighting="ebkd")
    distiller.fit(stacked_store_dataset([store_a, store_b], data.train, 32, shuffle=True), ...)

Per token t with K teachers, the divergence term of `CausalLMDistiller` becomes

    D_t = sum_k w_k,t D(p_k,t, p_S,t),

w_t the `tfkd.teacher_weighting` weights of the K next-token distributions at t (`aver` 1 / K,
`ebkd` from the teachers' entropies, `ca_mkd` from their cross-entropies on the data's next
token), held constant in the gradient. The loss is unchanged otherwise: the sum over valid tokens
(padding, prompts and labels of -100 left out) divided by the global number of valid tokens.

From stored top-k, teacher k's distribution is the one the store describes: its k stored
log-probabilities, and its tail mass r (1 - the top-k mass) spread evenly over the V - k tokens
not stored, the maximum-entropy completion (the one `tfkd.losses.sparse_topk_kl` assumes at
T != 1), renormalised. EBKD's entropies and CA-MKD's cross-entropies are those of this
distribution: a next token outside teacher k's top-k costs it -log(r / (V - k)). With k = V it is
the teacher's full distribution, and the weights are the live ones (up to the store's float16
rounding). D is then `tfkd.losses.sparse_topk_kl` per teacher.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfkd import losses
from tfkd import teacher_weighting as weighting_functions
from tfkd.data.language_modeling import epoch_batches
from tfkd.lm.distiller import (
    STORE_INPUTS,
    CausalLMDistiller,
    check_vocabularies,
    vocabulary_size,
)

METHODS = ("aver", "ebkd", "ca_mkd")
# A tail mass read as at least this, so that a next token outside the top-k has a finite cost.
SMALLEST_TAIL = 1e-12


def check_shared_vocabulary(teachers):
    """Refuses teachers that do not share one vocabulary, naming both sizes in one line."""
    for first, second in zip(teachers, teachers[1:]):
        sizes = vocabulary_size(first), vocabulary_size(second)
        if None not in sizes and sizes[0] != sizes[1]:
            raise ValueError(
                f"teachers must share the tokenizer: teacher {first.name!r} has a vocabulary "
                f"of {sizes[0]} tokens, teacher {second.name!r} {sizes[1]}"
            )


def check_method(method, count=None):
    if method not in METHODS:
        raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    minimum = weighting_functions.min_teachers(method)
    if count is not None and count < minimum:
        raise ValueError(f"--method={method} needs at least {minimum} --teachers; got {count}")


def completed_log_probs(topk_ids, topk_log_probs, tail_mass, vocabulary):
    """The stored distribution over the whole vocabulary: [..., k] ids and log-probabilities,
    [...] tail mass -> [..., V] log-probabilities (unnormalised: the stored float16 values are
    kept), the tail spread evenly over the V - k tokens not stored."""
    ids = tf.cast(topk_ids, tf.int32)
    log_probs = tf.cast(topk_log_probs, tf.float32)
    k = ids.shape[-1]
    leading = tf.shape(ids)[:-1]
    rows = tf.reduce_prod(leading)
    tail = tf.maximum(tf.cast(tail_mass, tf.float32), SMALLEST_TAIL)
    fill = tf.math.log(tail) - float(np.log(max(vocabulary - k, 1)))
    full = tf.broadcast_to(tf.reshape(fill, [rows, 1]), [rows, vocabulary])
    flat_ids = tf.reshape(ids, [rows, k])
    indices = tf.stack([tf.repeat(tf.range(rows), k), tf.reshape(flat_ids, [-1])], axis=1)
    full = tf.tensor_scatter_nd_update(full, indices, tf.reshape(log_probs, [-1]))
    return tf.reshape(full, tf.concat([leading, [vocabulary]], axis=0))


def token_weights(teacher_logits, labels, method):
    """Per-token teacher weights: [K, batch, time, V] logits (or log-probabilities), [batch,
    time] next tokens -> [batch, time, K], summing to 1 over the teachers."""
    return ops.stop_gradient(weighting_functions.teacher_weights(teacher_logits, labels, method))


def stored_token_weights(stored, labels, method, vocabulary):
    """Per-token weights of K stored teachers: `stored` holds `teacher_topk_ids` and
    `teacher_topk_log_probs` [K, batch, time, k] and `teacher_tail_mass` [K, batch, time]."""
    completed = completed_log_probs(
        stored["teacher_topk_ids"],
        stored["teacher_topk_log_probs"],
        stored["teacher_tail_mass"],
        vocabulary,
    )
    return token_weights(completed, labels, method)


class TeacherStack(keras.Model):
    """K frozen causal LMs called on one batch: -> logits [K, batch, time, V]. A Model, so that
    the distiller's metrics leave out those of the teachers (KerasHub tasks compile themselves)."""

    def __init__(self, teachers, **kwargs):
        super().__init__(**kwargs)
        self.teachers = list(teachers)
        for teacher in self.teachers:
            teacher.trainable = False
        self.built = all(teacher.built for teacher in self.teachers)

    def call(self, inputs, training=False):
        return ops.stack([teacher(inputs, training=False) for teacher in self.teachers], axis=0)


def _teachers_first(stored):
    """The batch's stored arrays, teacher axis second ([batch, K, ...]) -> teacher axis first."""
    return {name: ops.moveaxis(value, 1, 0) for name, value in stored.items()}


class MultiTeacherCausalLMDistiller(CausalLMDistiller):
    """`CausalLMDistiller` with K teachers weighted per token.

    Args:
      student: a causal LM.
      teachers: K >= 1 causal LMs sharing the student's vocabulary (2 for ebkd and ca_mkd), or
        None to distil from the batches' stacked stored top-k (`stacked_store_dataset`).
      weighting: "aver", "ebkd" or "ca_mkd".
      **options: `CausalLMDistiller`'s (divergence, temperature, alpha, on-policy sampling...);
        ca_mkd reads the data's next tokens and takes no on-policy batches.
    """

    def __init__(self, student, teachers=None, weighting="aver", **options):
        teachers = list(teachers or [])
        check_method(weighting, len(teachers) if teachers else None)
        if weighting == "ca_mkd" and options.get("on_policy_fraction", 0.0) > 0:
            raise ValueError(
                "--method=ca_mkd weighs teachers by the data's next token: "
                "--on_policy_fraction must be 0"
            )
        check_shared_vocabulary(teachers)
        for teacher in teachers:
            check_vocabularies(student, teacher)
        super().__init__(student, None, **options)
        self.weighting = weighting
        self.teacher = TeacherStack(teachers, name="teachers") if teachers else None

    def divergence_terms(self, teacher, student_logits, labels=None):
        """Per-token sum_k w_k D_k [batch, time] from stacked logits [K, batch, time, V] or the
        stored top-k of K teachers ([batch, K, ...] as `stacked_store_dataset` gives them)."""
        vocabulary = student_logits.shape[-1]
        if isinstance(teacher, dict):
            stored = _teachers_first(teacher)
            check_method(self.weighting, stored["teacher_topk_ids"].shape[0])
            weights = stored_token_weights(stored, labels, self.weighting, vocabulary)
            per_teacher = [
                losses.sparse_topk_kl(
                    stored["teacher_topk_ids"][index],
                    stored["teacher_topk_log_probs"][index],
                    student_logits,
                    self.temperature,
                )
                for index in range(stored["teacher_topk_ids"].shape[0])
            ]
        else:
            weights = token_weights(teacher, labels, self.weighting)
            divergence = losses.divergence(self.divergence, self.jsd_beta)
            per_teacher = [
                divergence(teacher[index], student_logits, self.temperature)
                for index in range(teacher.shape[0])
            ]
        return ops.sum(weights * ops.stack(per_teacher, axis=-1), axis=-1)


def stacked_store_dataset(stores, split, batch_size, shuffle=False, seed=0, orders=None):
    """(x, y, sample_weight) batches of `split` with the stored top-k of K teachers, one
    `TopKStore` each (built from `split`, with one k): x's `teacher_topk_ids` and
    `teacher_topk_log_probs` are [batch, K, time, k], `teacher_tail_mass` [batch, K, time].
    With `orders` (int [epochs, N]): the batches of those epochs in those orders."""
    stores = list(stores)
    if not stores:
        raise ValueError("stacked_store_dataset needs at least one store")
    ks = sorted({store.k for store in stores})
    if len(ks) > 1:
        raise ValueError(f"--cache_topk: every teacher's store needs one k; got {ks}")
    x, y, weight = split.shifted()
    for store in stores:
        if store.record["sequences"] != len(y):
            raise ValueError(
                f"a store holds {store.record['sequences']} sequences; the split has {len(y)}"
            )
    count, k, time = len(stores), ks[0], x["token_ids"].shape[1]
    dtypes = [tf.int32, tf.float16, tf.float32]

    def read(rows):
        rows = np.sort(rows)  # sorted reads are sequential on disk
        return (
            rows,
            *(
                np.stack([np.asarray(store.arrays[name][rows]) for store in stores], axis=1)
                for name in STORE_INPUTS
            ),
        )

    def gather(rows):
        rows, ids, log_probs, tail = tf.numpy_function(read, [rows], [tf.int64, *dtypes])
        rows.set_shape([None])
        ids.set_shape([None, count, time, k])
        log_probs.set_shape([None, count, time, k])
        tail.set_shape([None, count, time])
        inputs = {name: tf.gather(value, rows) for name, value in x.items()}
        inputs.update(zip(STORE_INPUTS, (ids, log_probs, tail)))
        return inputs, tf.gather(y, rows), tf.gather(weight, rows)

    if orders is not None:
        return epoch_batches(orders, batch_size).map(gather).prefetch(2)
    indices = tf.data.Dataset.range(len(y))
    if shuffle:
        indices = indices.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    return indices.batch(batch_size).map(gather).prefetch(2)


class StackedStores:
    """One `TopKStore` per teacher read as one source: `dataset` as `TopKStore.dataset`."""

    def __init__(self, stores):
        self.stores = list(stores)

    def dataset(self, split, batch_size, shuffle=False, seed=0, orders=None):
        return stacked_store_dataset(self.stores, split, batch_size, shuffle, seed, orders)


def run_distiller(student, teachers, method, options, **settings):
    """The distiller of a language-model run's `--method` on its `--teachers` (models, or None
    to read stacked stores): the method's `temperature`, and its `lambda1` as alpha = lambda1 /
    (1 + lambda1), so that the objective is (CE + lambda1 * sum_k w_k D_k) / (1 + lambda1),
    the multi-teacher methods' loss divided by 1 + lambda1. `settings`: the on-policy options
    of `CausalLMDistiller` (`on_policy_fraction`, `sampling`)."""
    lambda1 = float(options["lambda1"])
    return MultiTeacherCausalLMDistiller(
        student,
        teachers,
        weighting=method,
        temperature=options["temperature"],
        alpha=lambda1 / (1.0 + lambda1),
        **settings,
    )
