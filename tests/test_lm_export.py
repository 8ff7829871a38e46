"""A causal-LM student exported to .keras, SavedModel (`serve`, `generate`) and LiteRT agrees with
the Keras model on next-token logits; `generate` reproduces greedy generation token for token."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny_lms import TIME, VOCABULARY, tiny_lm

from tfkd.data.language_modeling import TokenSplit
from tfkd.lm.causal_lm_export import GENERATE, Generation, export_causal_lm

NEW_TOKENS = 3


def _split(rows=6, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(3, VOCABULARY, (rows, TIME + 1)).astype("int32")
    padding = np.ones_like(tokens)
    for row, length in ((4, 6), (5, 3)):
        padding[row, length:] = 0
        tokens[row, length:] = 0
    return TokenSplit(tokens, padding, padding.copy())


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One export of every format (LiteRT converted once for the module), with its report."""
    directory = str(tmp_path_factory.mktemp("lm_export"))
    student, split = tiny_lm(1), _split()
    exports = export_causal_lm(
        student,
        directory,
        ("keras", "savedmodel", "tflite"),
        test_split=split,
        generation=Generation(max_new_tokens=NEW_TOKENS),
    )
    return student, split, directory, exports


def _inputs(split):
    x, y, weight = split.shifted()
    return x, y, weight > 0


def test_savedmodel_and_litert_agree_with_keras_on_next_token_logits(exported):
    from ai_edge_litert.interpreter import Interpreter

    student, split, directory, exports = exported
    x, _, valid = _inputs(split)
    reference = np.asarray(student(x))
    serve = tf.saved_model.load(os.path.join(directory, exports["savedmodel"])).signatures["serve"]
    runner = Interpreter(
        model_path=os.path.join(directory, exports["tflite"])
    ).get_signature_runner("serve")
    reloaded = keras.saving.load_model(os.path.join(directory, exports["keras"]))
    # The whole split, then a new batch size and a shorter length.
    for rows, time in ((len(x["token_ids"]), TIME), (2, 5)):
        part = {name: value[:rows, :time] for name, value in x.items()}
        expected = reference[:rows, :time]
        saved = serve(**{name: tf.constant(value) for name, value in part.items()})["logits"]
        lite = runner(**part)["logits"]
        mask = valid[:rows, :time]
        for logits in (saved.numpy(), lite, np.asarray(reloaded(part))):
            assert logits.shape == (rows, time, VOCABULARY)
            np.testing.assert_allclose(logits[mask], expected[mask], atol=1e-4)
            np.testing.assert_array_equal(logits[mask].argmax(-1), expected[mask].argmax(-1))


def test_report_holds_the_parity_on_next_token_logits(exported):
    student, split, directory, exports = exported
    x, y, valid = _inputs(split)
    with open(os.path.join(directory, exports["report"])) as handle:
        report = json.load(handle)
    reference = np.asarray(student(x))
    accuracy = np.mean(reference[valid].argmax(-1) == y[valid])
    assert report["test_tokens"] == int(valid.sum()) == 4 * TIME + 5 + 2
    assert report["keras"]["accuracy"] == pytest.approx(accuracy)
    for name in ("savedmodel", "tflite"):
        entry = report["formats"][name]
        assert entry["agreement"] == 1.0
        assert entry["accuracy"] == pytest.approx(accuracy)
        assert 0 <= entry["max_abs_logit_diff"] < 1e-4
        assert entry["size_bytes"] > 0
    assert report["formats"]["savedmodel"]["generate"]["token_agreement"] == 1.0
    with open(os.path.join(directory, "export_report.md")) as handle:
        markdown = handle.read()
    assert "| tflite |" in markdown and "SavedModel `generate` (greedy, 3 new tokens)" in markdown


def _greedy_reference(model, prompts, lengths, new_tokens):
    """Keras-side greedy generation, one model call per step: the argmax of the next-token
    logits after each row's last token."""
    buffer = np.zeros((len(prompts), prompts.shape[1] + new_tokens), "int32")
    buffer[:, : prompts.shape[1]] = prompts
    for step in range(new_tokens):
        inputs = buffer[:, :-1]
        logits = np.asarray(model({"token_ids": inputs, "padding_mask": np.ones_like(inputs)}))
        for row, length in enumerate(lengths):
            buffer[row, length + step] = logits[row, length + step - 1].argmax()
    return buffer


def _prompts(split):
    x, _, _ = split.shifted()
    width = TIME + 1 - NEW_TOKENS
    lengths = np.array([1, 2, 3, 4, 5, 6])
    mask = (np.arange(width)[None, :] < lengths[:, None]).astype("int32")
    return x["token_ids"][:, :width] * mask, mask, lengths


def test_generate_signature_reproduces_keras_greedy_generation(exported):
    student, split, directory, exports = exported
    prompts, mask, lengths = _prompts(split)
    expected = _greedy_reference(student, prompts, lengths, NEW_TOKENS)
    generate = tf.saved_model.load(os.path.join(directory, exports["savedmodel"])).signatures[
        GENERATE
    ]
    result = generate(token_ids=tf.constant(prompts), padding_mask=tf.constant(mask))
    keep = np.arange(expected.shape[1])[None, :] < (lengths + NEW_TOKENS)[:, None]
    np.testing.assert_array_equal(result["padding_mask"].numpy(), keep.astype("int32"))
    np.testing.assert_array_equal(result["token_ids"].numpy(), expected * keep)


def test_generation_stops_after_an_end_token(exported, tmp_path):
    student, split, _, _ = exported
    prompts, mask, lengths = _prompts(split)
    expected = _greedy_reference(student, prompts, lengths, NEW_TOKENS)
    end = int(expected[0, lengths[0]])  # row 0's first generated token
    export_causal_lm(
        student,
        str(tmp_path),
        ("savedmodel",),
        generation=Generation(max_new_tokens=NEW_TOKENS, end_token_id=end),
    )
    generate = tf.saved_model.load(str(tmp_path / "saved_model")).signatures[GENERATE]
    result = generate(token_ids=tf.constant(prompts), padding_mask=tf.constant(mask))
    keep = np.zeros_like(expected)
    for row, length in enumerate(lengths):
        stop = length + NEW_TOKENS
        generated = list(expected[row, length:stop])
        if end in generated:  # the end token itself is kept, what follows is padding
            stop = length + generated.index(end) + 1
        keep[row, :stop] = 1
    assert keep[0].sum() == lengths[0] + 1
    np.testing.assert_array_equal(result["padding_mask"].numpy(), keep)
    np.testing.assert_array_equal(result["token_ids"].numpy(), expected * keep)


def test_bad_export_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"--export: tflite_int8 not available for causal LMs"):
        export_causal_lm(tiny_lm(1), str(tmp_path), ("keras", "tflite_int8"))
    with pytest.raises(ValueError, match=r"--max_new_tokens must be a positive integer, got 0"):
        export_causal_lm(tiny_lm(1), str(tmp_path), ("keras",), generation=Generation(0))


def test_sampled_generation_keeps_to_the_top_k_and_follows_the_seed(exported, tmp_path):
    student, split, _, _ = exported
    prompts, mask, lengths = _prompts(split)
    generation = Generation(max_new_tokens=NEW_TOKENS, sampling="sample", top_k=3)
    export_causal_lm(student, str(tmp_path), ("savedmodel",), generation=generation)
    generate = tf.saved_model.load(str(tmp_path / "saved_model")).signatures[GENERATE]
    inputs = {"token_ids": tf.constant(prompts), "padding_mask": tf.constant(mask)}
    first = generate(**inputs, seed=tf.constant([3, 0]))["token_ids"].numpy()
    again = generate(**inputs, seed=tf.constant([3, 0]))["token_ids"].numpy()
    np.testing.assert_array_equal(first, again)
    # Every sampled token is among the 3 most likely after the tokens before it.
    logits = np.asarray(
        student({"token_ids": first[:, :-1], "padding_mask": np.ones_like(first[:, :-1])})
    )
    top3 = np.argsort(-logits, axis=-1)[..., :3]
    for row, length in enumerate(lengths):
        for position in range(length, length + NEW_TOKENS):
            assert first[row, position] in top3[row, position - 1]
    draws = [
        generate(**inputs, seed=tf.constant([seed, 0]))["token_ids"].numpy() for seed in range(4)
    ]
    assert any(not np.array_equal(draws[0], other) for other in draws[1:])
