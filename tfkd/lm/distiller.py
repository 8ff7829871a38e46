"""Token-level distillation of causal language models, off- and on-policy (GKD).

    distiller = CausalLMDistiller(student, teacher, divergence="jsd", jsd_beta=0.5,
                                  on_policy_fraction=0.5,
                                  sampling=Sampling(max_new_tokens=32, end_token_id=2))
    distiller.compile(optimizer="adam")
    distiller.fit(data.dataset("train", 32, shuffle=True), epochs=3)

Batches are KerasHub's causal-LM batches: x = {"token_ids", "padding_mask"} [batch, time],
y = next tokens [batch, time], sample_weight [batch, time] (0 on padding and prompts; labels of
-100 are left out too). Per token, the objective is

    alpha * D(p_T, p_S) + (1 - alpha) * CE(y, p_S),

each term summed over its valid tokens and divided by the global count of valid tokens (all
replicas). D is forward KL (default), reverse KL or generalized JSD(beta).

On-policy (Agarwal et al. 2024, "On-Policy Distillation of Language Models: Learning from
Self-Generated Mistakes"): with probability `on_policy_fraction` a batch's completions are
replaced by the student's own samples (drawn after each row's prompt, the tokens before its first
weighted target) and D is taken on those sampled tokens, up to the first end token; the
cross-entropy term stays on the data. Without a live teacher, x carries the teacher's stored
top-k (`teacher_topk_ids`, `teacher_topk_log_probs`, `teacher_tail_mass`, see
`tfkd.lm.store`) and D is `sparse_topk_kl`.
"""

import keras
import tensorflow as tf
from keras import ops

from tfkd import losses
from tfkd.distillers.base import Distiller, per_worker_logs
from tfkd.lm import objective
from tfkd.lm.sampling import Sampling, sample_completions

MODEL_INPUTS = ("token_ids", "padding_mask")
STORE_INPUTS = ("teacher_topk_ids", "teacher_topk_log_probs", "teacher_tail_mass")
IGNORED_LABEL = -100


class Perplexity(keras.metrics.Mean):
    """exp of the token-weighted mean negative log-likelihood."""

    def result(self):
        return ops.exp(super().result())


def vocabulary_size(model):
    shape = getattr(model, "output_shape", None)
    return None if shape is None else shape[-1]


def check_vocabularies(student, teacher):
    """Refuses a teacher and student that do not share one vocabulary, naming both sizes."""
    sizes = vocabulary_size(student), vocabulary_size(teacher)
    if None not in sizes and sizes[0] != sizes[1]:
        raise ValueError(
            f"student and teacher must share the tokenizer: student "
            f"{student.name!r} has a vocabulary of {sizes[0]} tokens, teacher "
            f"{teacher.name!r} {sizes[1]}"
        )


def check_positive_integer(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"--{name} must be a positive integer, got {value!r}")


class CausalLMDistiller(Distiller):
    """Distils a causal LM (any Keras model {"token_ids", "padding_mask"} -> [batch, time, V]
    logits, such as a `keras_hub.models.CausalLM`) into another of the same vocabulary.

    Args:
      student, teacher: causal LMs; teacher None distils from stored top-k in the batches, or
        with alpha = 0 trains the student alone on the same per-token cross-entropy.
      divergence: "forward_kl" (default), "reverse_kl" or "jsd" (generalized JSD, `jsd_beta`).
      temperature: T of every softmax in the divergence (terms scaled by T^2).
      alpha: weight of the divergence; 1 - alpha weighs cross-entropy on the data.
      on_policy_fraction: probability that a training batch is scored on the student's samples.
      sampling: the student's draws, a `Sampling` (None: `Sampling()`); tokens after a
        sample's first end token are left out of the loss, and its seed seeds the on-policy
        draws with the optimizer's step, so a resumed run repeats them.
    """

    loss_terms = ("loss", "student_loss", "distillation_loss")

    def __init__(
        self,
        student,
        teacher=None,
        divergence="forward_kl",
        temperature=1.0,
        alpha=0.9,
        jsd_beta=0.5,
        on_policy_fraction=0.0,
        sampling=None,
        **kwargs,
    ):
        sampling = Sampling() if sampling is None else sampling
        if divergence not in losses.DIVERGENCES:
            raise ValueError(
                f"--divergence must be one of "
                f"{', '.join(losses.DIVERGENCES.names())}, got {divergence!r}"
            )
        if not 0.0 <= jsd_beta <= 1.0:
            raise ValueError(f"--jsd_beta must be in [0, 1], got {jsd_beta}")
        if not 0.0 <= on_policy_fraction <= 1.0:
            raise ValueError(f"--on_policy_fraction must be in [0, 1], got {on_policy_fraction}")
        if on_policy_fraction > 0:
            check_positive_integer("max_new_tokens", sampling.max_new_tokens)
        if teacher is None and on_policy_fraction > 0:
            raise ValueError(
                "--on_policy_fraction > 0 needs a live teacher: stored teacher "
                "outputs cover the data's tokens, not the student's samples"
            )
        if teacher is not None:
            check_vocabularies(student, teacher)
        super().__init__(
            student, teacher, temperature=temperature, alpha=alpha, target=None, **kwargs
        )
        self.divergence = divergence
        self.jsd_beta = float(jsd_beta)
        self.divergence_function = losses.divergence(divergence, jsd_beta=self.jsd_beta)
        self.on_policy_fraction = float(on_policy_fraction)
        self.sampling = sampling
        self.perplexity = Perplexity(name="perplexity")

    # ---- the objective ---------------------------------------------------------------------
    def call(self, inputs, training=False):
        return self.student({name: inputs[name] for name in MODEL_INPUTS}, training=training)

    def token_masks(self, x, y, sample_weight):
        """(labels with -100 replaced by 0, float mask [batch, time] of the tokens to learn)."""
        labels = ops.cast(y, "int32")
        valid = ops.cast(labels != IGNORED_LABEL, "float32")
        weight = x["padding_mask"] if sample_weight is None else sample_weight
        mask = ops.cast(weight, "float32") * valid
        return ops.where(labels == IGNORED_LABEL, 0, labels), mask

    def divergence_terms(self, teacher, student_logits, labels=None):
        """Per-token D [batch, time]: `teacher` is logits, or the stored top-k dictionary;
        `labels`, the data's next tokens, are for weightings of several teachers."""
        if isinstance(teacher, dict):
            return losses.sparse_topk_kl(
                teacher["teacher_topk_ids"],
                teacher["teacher_topk_log_probs"],
                student_logits,
                self.temperature,
                tail=teacher["teacher_tail_mass"],
            )
        return self.divergence_function(teacher, student_logits, self.temperature)

    def on_policy_inputs(self, inputs, labels, mask):
        """With probability `on_policy_fraction`: (inputs holding the student's samples, mask of
        the sampled targets); otherwise (inputs, mask) unchanged."""
        step = ops.cast(self.optimizer.iterations, "int32")
        choice = tf.random.stateless_uniform([], seed=tf.stack([self.sampling.seed, step]))
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group

        def sampled():
            tokens = ops.concatenate([inputs["token_ids"][:, :1], labels], axis=1)
            has_target = ops.any(mask > 0, axis=1)
            first_target = ops.cast(ops.argmax(ops.cast(mask > 0, "int32"), axis=1), "int32")
            prompt_lengths = ops.where(has_target, first_target + 1, ops.shape(tokens)[1])
            tokens, generated = sample_completions(
                self.student,
                tokens,
                prompt_lengths,
                self.sampling,
                seed=tf.stack([self.sampling.seed + 1 + replica, step]),
            )
            positions = ops.arange(ops.shape(tokens)[1] - 1)[None, :]
            padding = (positions < prompt_lengths[:, None]) | (generated[:, :-1] > 0)
            return (
                tokens[:, :-1],
                ops.cast(padding, "int32"),
                ops.cast(generated[:, 1:], "float32"),
            )

        def data():
            return (
                ops.cast(inputs["token_ids"], "int32"),
                ops.cast(inputs["padding_mask"], "int32"),
                mask,
            )

        token_ids, padding_mask, divergence_mask = tf.cond(
            choice < self.on_policy_fraction, sampled, data
        )
        return {"token_ids": token_ids, "padding_mask": padding_mask}, divergence_mask

    def compute_objective(self, x, y, sample_weight, training):
        """(scalar loss to differentiate, the masked sums to report)."""
        inputs = {name: x[name] for name in MODEL_INPUTS}
        labels, mask = self.token_masks(x, y, sample_weight)
        stored = {name: x[name] for name in STORE_INPUTS if name in x}
        on_policy = training and self.on_policy_fraction > 0
        if on_policy:
            scored_inputs, divergence_mask = self.on_policy_inputs(inputs, labels, mask)
        else:
            scored_inputs, divergence_mask = inputs, mask
        student_logits = self.student(scored_inputs, training=training)
        if stored and not on_policy:
            divergence = self.divergence_terms(stored, student_logits, labels)
        elif self.teacher is not None:
            teacher = ops.stop_gradient(self.teacher(scored_inputs, training=False))
            divergence = self.divergence_terms(teacher, student_logits, labels)
        elif self.alpha == 0.0:  # the student alone: cross-entropy only
            divergence = ops.zeros_like(student_logits[..., 0])
        else:
            raise ValueError(
                "no teacher: pass a teacher, batches with the stored top-k "
                f"({', '.join(STORE_INPUTS)}) or alpha=0 for the student alone"
            )
        data_logits = student_logits
        if on_policy and self.alpha < 1.0:
            data_logits = self.student(inputs, training=training)
        cross_entropy = losses.cross_entropy(labels, data_logits)
        loss = self.alpha * objective.masked_global_mean(divergence, divergence_mask) + (
            1.0 - self.alpha
        ) * objective.masked_global_mean(cross_entropy, mask)
        if self.student.losses:
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            loss += ops.sum(self.student.losses) / replicas
        sums = {
            "distillation_loss": objective.masked_sums(divergence, divergence_mask),
            "student_loss": objective.masked_sums(cross_entropy, mask),
        }
        return loss, sums

    # ---- Keras plumbing --------------------------------------------------------------------
    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            loss, sums = self.compute_objective(x, y, sample_weight, training=True)
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return self._report(loss, sums)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        return self._report(*self.compute_objective(x, y, sample_weight, training=False))

    def _report(self, loss, sums):
        """Token-weighted means over the epoch (the cross-entropy one is the per-token NLL);
        `loss` is the batch mean of the objective of the global batch."""
        for name, (total, count) in sums.items():
            self.trackers[name].update_state(
                tf.math.divide_no_nan(total, count), sample_weight=count
            )
        nll_total, nll_count = sums["student_loss"]
        self.perplexity.update_state(
            tf.math.divide_no_nan(nll_total, nll_count), sample_weight=nll_count
        )
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        # Each replica holds its part of the global objective: the parts add up across replicas.
        self.trackers["loss"].update_state(loss * replicas, sample_weight=1.0 / replicas)
        return per_worker_logs({metric.name: metric.result() for metric in self.metrics})
