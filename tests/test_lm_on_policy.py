"""On-policy distillation (GKD): batches scored on the student's own samples."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny_lms import TIME, VOCABULARY, batch, kl, softmax, tiny_lm

from tfkd.lm import CausalLMDistiller
from tfkd.lm.sampling import Sampling, filter_logits

PROMPT_LENGTHS = np.array([2, 3, 1, 4])  # start token included
NEW_TOKENS = 3


def prompt_batch():
    """Four rows of TIME + 1 tokens whose first PROMPT_LENGTHS tokens are the prompt."""
    x, y, _ = batch(seed=3)
    tokens = np.concatenate([x["token_ids"][:, :1], np.abs(y)], axis=1) % VOCABULARY
    tokens[tokens < 3] += 3
    weight = (np.arange(1, TIME + 1)[None, :] >= PROMPT_LENGTHS[:, None]).astype("float32")
    x = {"token_ids": tokens[:, :-1], "padding_mask": np.ones((4, TIME), "int32")}
    return x, tokens[:, 1:], weight


def greedy_reference(student, teacher, x, end_token_id=None):
    """Greedy completions drawn by calling the student position by position, then the mean
    forward KL of the teacher and student at the sampled tokens (up to the first end)."""
    buffer = np.concatenate([x["token_ids"], np.zeros((4, 1), "int32")], axis=1)
    for step in range(NEW_TOKENS):
        logits = np.asarray(
            student({"token_ids": buffer[:, :TIME], "padding_mask": np.ones((4, TIME), "int32")})
        )
        for row, prompt in enumerate(PROMPT_LENGTHS):
            buffer[row, prompt + step] = np.argmax(logits[row, prompt + step - 1])
    mask = np.zeros((4, TIME + 1))
    for row, prompt in enumerate(PROMPT_LENGTHS):
        for position in range(prompt, prompt + NEW_TOKENS):
            mask[row, position] = 1
            if buffer[row, position] == end_token_id:
                break
    inputs = {"token_ids": buffer[:, :TIME], "padding_mask": np.ones((4, TIME), "int32")}
    per_token = kl(softmax(teacher(inputs)), softmax(student(inputs)))
    return (per_token * mask[:, 1:]).sum() / mask[:, 1:].sum(), buffer, mask


def _train(distiller, data, steps=1, learning_rate=0.0):
    distiller.compile(optimizer=keras.optimizers.SGD(learning_rate))
    dataset = tf.data.Dataset.from_tensor_slices(data).batch(4).repeat()
    return distiller.fit(dataset, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=0).history


def test_on_policy_batches_are_scored_on_the_students_samples_up_to_the_end_token():
    teacher, student = tiny_lm(1, hidden=32), tiny_lm(2)
    x, y, weight = prompt_batch()
    _, buffer, full_mask = greedy_reference(student, teacher, x)
    # Row 0's first sample is taken as the end token: row 0 is scored on that token only,
    # other rows up to their first occurrence of it, if any.
    end_token_id = int(buffer[0, PROMPT_LENGTHS[0]])
    expected, _, mask = greedy_reference(student, teacher, x, end_token_id)
    assert mask[0].sum() == 1 and mask.sum() < full_mask.sum()
    distiller = CausalLMDistiller(
        student,
        teacher,
        alpha=1.0,
        on_policy_fraction=1.0,
        sampling=Sampling(max_new_tokens=NEW_TOKENS, top_k=1, end_token_id=end_token_id),
    )
    history = _train(distiller, (x, y, weight))
    assert history["distillation_loss"][0] == pytest.approx(expected, rel=1e-4)


def _plain_step(data, learning_rate, alpha):
    """One SGD step of off-policy distillation written out with a gradient tape: alpha *
    forward KL + (1 - alpha) * cross-entropy, each summed over weighted tokens / their count."""
    x, y, weight = data
    teacher, student = tiny_lm(1, hidden=32), tiny_lm(2)
    log_teacher = tf.nn.log_softmax(teacher(x))
    with tf.GradientTape() as tape:
        log_student = tf.nn.log_softmax(student(x))
        divergence = tf.reduce_sum(tf.exp(log_teacher) * (log_teacher - log_student), -1)
        nll = -tf.gather(log_student, y, batch_dims=2)
        loss = tf.reduce_sum((alpha * divergence + (1 - alpha) * nll) * weight) / weight.sum()
    gradients = tape.gradient(loss, student.trainable_variables)
    return [
        v.numpy() - learning_rate * g.numpy()
        for v, g in zip(student.trainable_variables, gradients)
    ]


def test_zero_fraction_is_off_policy_distillation():
    data = prompt_batch()
    weights = []
    for fraction in (0.0, 1e-9):
        teacher, student = tiny_lm(1, hidden=32), tiny_lm(2)
        distiller = CausalLMDistiller(
            student, teacher, alpha=0.8, on_policy_fraction=fraction, sampling=Sampling(seed=5)
        )
        _train(distiller, data, steps=1, learning_rate=0.5)
        weights.append([v.numpy() for v in student.trainable_variables])
    expected = _plain_step(data, 0.5, 0.8)
    for zero, never_drawn, plain in zip(*weights, expected):
        np.testing.assert_allclose(zero, plain, rtol=1e-5, atol=1e-6)
        # A fraction that is never drawn takes the same step, up to float rounding.
        np.testing.assert_allclose(never_drawn, zero, rtol=1e-5, atol=1e-7)


def test_students_own_samples_move_towards_the_teachers_preferred_token():
    """A teacher that always prefers one token: on-policy reverse KL teaches the student to
    sample it after the prompt, where it is scored."""
    preferred = 7
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    padding_mask = keras.Input((None,), dtype="int32", name="padding_mask")
    table = np.where(np.arange(VOCABULARY) == preferred, 6.0, 0.0)
    logits = keras.layers.Embedding(
        VOCABULARY,
        VOCABULARY,
        trainable=False,
        embeddings_initializer=keras.initializers.Constant(np.tile(table, (VOCABULARY, 1))),
    )(token_ids)
    teacher = keras.Model(
        {"token_ids": token_ids, "padding_mask": padding_mask}, logits, name="prefers_one_token"
    )
    student = tiny_lm(2)
    x, y, weight = prompt_batch()
    _, before, mask = greedy_reference(student, teacher, x)
    distiller = CausalLMDistiller(
        student,
        teacher,
        divergence="reverse_kl",
        alpha=1.0,
        on_policy_fraction=1.0,
        sampling=Sampling(max_new_tokens=NEW_TOKENS, seed=0),
    )
    distiller.compile(optimizer=keras.optimizers.Adam(0.05))
    dataset = tf.data.Dataset.from_tensor_slices((x, y, weight)).batch(4).repeat()
    history = distiller.fit(dataset, epochs=2, steps_per_epoch=6, shuffle=False, verbose=0).history
    _, after, _ = greedy_reference(student, teacher, x)
    sampled = mask > 0
    assert np.mean(after[sampled] == preferred) > np.mean(before[sampled] == preferred)
    assert np.mean(after[sampled] == preferred) == 1.0
    assert history["distillation_loss"][1] < history["distillation_loss"][0]


def test_top_k_and_top_p_filtering_against_numpy():
    logits = np.log(np.array([[0.5, 0.2, 0.15, 0.1, 0.05]], "float32"))
    kept_k = np.isfinite(filter_logits(logits, top_k=2).numpy())
    np.testing.assert_array_equal(kept_k, [[True, True, False, False, False]])
    # Nucleus: the smallest set whose mass reaches 0.8: 0.5 + 0.2 + 0.15.
    kept_p = np.isfinite(filter_logits(logits[:, ::-1], top_p=0.8).numpy())
    np.testing.assert_array_equal(kept_p, [[False, False, True, True, True]])
    np.testing.assert_allclose(filter_logits(logits, temperature=2.0), logits / 2.0)


def _greedy_on_policy_step(strategy, weights):
    x, y, weight = prompt_batch()
    with strategy.scope():
        teacher, student = tiny_lm(1, hidden=32), tiny_lm(2)
        distiller = CausalLMDistiller(
            student,
            teacher,
            divergence="jsd",
            alpha=0.5,
            on_policy_fraction=1.0,
            sampling=Sampling(max_new_tokens=NEW_TOKENS, top_k=1),
        )
        distiller.compile(optimizer=keras.optimizers.SGD(1.0))
    if weights is not None:
        student.set_weights(weights)
    start = student.get_weights()
    dataset = tf.data.Dataset.from_tensor_slices((x, y, weight)).batch(4)
    history = distiller.fit(dataset, epochs=1, shuffle=False, verbose=0).history
    return start, student.get_weights(), history


def test_on_policy_step_on_two_replicas_is_the_one_replica_step(mirrored):
    """Greedy samples do not depend on the replica, so the sampled tokens, their counts per
    replica and the step are those of one replica."""
    start, one, history_one = _greedy_on_policy_step(tf.distribute.get_strategy(), None)
    _, two, history_two = _greedy_on_policy_step(mirrored, start)
    moved = max(np.abs(a - b).max() for a, b in zip(start, one))
    assert moved > 1e-2
    assert max(np.abs(a - b).max() for a, b in zip(one, two)) < 1e-5 * moved
    for name in ("loss", "student_loss", "distillation_loss"):
        assert history_two[name][0] == pytest.approx(history_one[name][0], rel=1e-5)
