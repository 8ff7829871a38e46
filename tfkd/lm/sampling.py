"""In-graph sampling of completions from a causal LM, for on-policy distillation.

The loop writes into a fixed-size buffer (shapes stay static, so it runs inside `train_step`
under any `tf.distribute` strategy): at step j every row's token at `prompt_length + j` is drawn
from the model's next-token distribution at the position before it. The model is causal, so
the tokens after that position (data, padding, or earlier draws of other rows) do not change it.
"""

import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How completions are drawn: up to `max_new_tokens` tokens (0 samples nothing) at
    `temperature`, from the `top_k` most likely tokens (0: every token) and the nucleus of mass
    `top_p` (1: every token); tokens after the first `end_token_id` (None: never stops) are
    masked. `seed` seeds the draws."""

    max_new_tokens: int = 16
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    end_token_id: int | None = None
    seed: int = 0

    def __post_init__(self):
        count = self.max_new_tokens
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(
                f"--max_new_tokens must be an integer >= 0 (0 samples nothing), got {count!r}"
            )
        if self.temperature <= 0:
            raise ValueError(f"--sampling_temperature must be > 0, got {self.temperature}")
        top_k = self.top_k
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise ValueError(
                f"--top_k must be an integer >= 0 (0 keeps every token), got {top_k!r}"
            )
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"--top_p must be in (0, 1], got {self.top_p}")
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "top_p", float(self.top_p))
        object.__setattr__(self, "seed", int(self.seed))


def filter_logits(logits, temperature=1.0, top_k=0, top_p=1.0):
    """Next-token logits [batch, V] after temperature, top-k and top-p (nucleus) filtering;
    filtered tokens get -inf. top_k = 0 and top_p = 1 keep every token."""
    logits = tf.cast(logits, tf.float32) / temperature
    very_negative = tf.fill(tf.shape(logits), float("-inf"))
    if top_k:
        kth = tf.math.top_k(logits, k=top_k).values[:, -1:]
        logits = tf.where(logits < kth, very_negative, logits)
    if top_p < 1.0:
        order = tf.argsort(logits, axis=-1, direction="DESCENDING")
        sorted_logits = tf.gather(logits, order, batch_dims=1)
        cumulative = tf.cumsum(tf.nn.softmax(sorted_logits, axis=-1), axis=-1, exclusive=True)
        # A token is kept while the mass before it is below top_p: the first always is.
        sorted_keep = cumulative < top_p
        keep = tf.scatter_nd(
            tf.stack(
                [
                    tf.repeat(tf.range(tf.shape(order)[0]), tf.shape(order)[1]),
                    tf.reshape(order, [-1]),
                ],
                axis=1,
            ),
            tf.reshape(sorted_keep, [-1]),
            tf.shape(logits),
        )
        logits = tf.where(keep, logits, very_negative)
    return logits


def sample_completions(model, token_ids, prompt_lengths, sampling, seed=None):
    """Samples up to `sampling.max_new_tokens` tokens after each row's prompt.

    Args:
      model: a causal LM, {"token_ids", "padding_mask"} [batch, time] -> logits
        [batch, time, V].
      token_ids: int [batch, length] buffer; row b's prompt is its first `prompt_lengths[b]`
        tokens (at least 1). The model reads the first `length - 1` positions.
      prompt_lengths: int [batch].
      sampling: a `Sampling`; a row stops at the end of the buffer, and when `end_token_id`
        is given, tokens after a row's first sampled end token are masked.
      seed: int [2] tensor for `tf.random.stateless_categorical`; None is
        [sampling.seed, 0].

    Returns:
      (token_ids [batch, length] with the samples written in, generated [batch, length] int32:
      1 on sampled tokens up to and including the first end token, 0 elsewhere).
    """
    if seed is None:
        seed = tf.constant([sampling.seed, 0])
    max_new_tokens, end_token_id = sampling.max_new_tokens, sampling.end_token_id
    token_ids = tf.cast(token_ids, tf.int32)
    prompt_lengths = tf.cast(prompt_lengths, tf.int32)
    batch, length = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
    inputs_length = length - 1
    rows = tf.range(batch)
    padding_mask = tf.ones([batch, inputs_length], tf.int32)

    def step(j, buffer):
        position = prompt_lengths + j  # the token drawn now
        active = position < length
        source = tf.clip_by_value(position - 1, 0, inputs_length - 1)
        logits = model(
            {"token_ids": buffer[:, :inputs_length], "padding_mask": padding_mask}, training=False
        )
        logits = tf.gather_nd(logits, tf.stack([rows, source], axis=1))
        logits = filter_logits(logits, sampling.temperature, sampling.top_k, sampling.top_p)
        drawn = tf.random.stateless_categorical(
            logits, 1, seed=seed + tf.stack([0, j]), dtype=tf.int32
        )[:, 0]
        target = tf.stack([rows, tf.minimum(position, length - 1)], axis=1)
        current = tf.gather_nd(buffer, target)
        buffer = tf.tensor_scatter_nd_update(buffer, target, tf.where(active, drawn, current))
        return j + 1, buffer

    _, token_ids = tf.while_loop(lambda j, _: j < max_new_tokens, step, (tf.constant(0), token_ids))
    positions = tf.range(length)[tf.newaxis, :]
    generated = (positions >= prompt_lengths[:, tf.newaxis]) & (
        positions < prompt_lengths[:, tf.newaxis] + max_new_tokens
    )
    if end_token_id is not None:
        is_end = tf.cast(generated & tf.equal(token_ids, end_token_id), tf.int32)
        after_end = (tf.cumsum(is_end, axis=1) - is_end) > 0
        generated = generated & ~after_end
    return token_ids, tf.cast(generated, tf.int32)
