"""Language-model data: the causal shift, prompt and padding masks, seeded splits, the corpus."""

import json

import numpy as np
import pytest

from tfkd.data import language_modeling as lm

TOKENIZER = lm.ByteTokenizer()
START, END, PAD = 1, 2, 0


def _ids(text):
    return [ord(c) + 3 for c in text]  # ASCII bytes shifted past the three special tokens


def test_causal_shift_matches_keras_hub_preprocessor_by_hand():
    tokens = np.array([[1, 10, 11, 12, 2, 0, 0]])
    mask = np.array([[1, 1, 1, 1, 1, 0, 0]])
    x, y, weight = lm.causal_shift(tokens, mask)
    np.testing.assert_array_equal(x["token_ids"], [[1, 10, 11, 12, 2, 0]])
    np.testing.assert_array_equal(x["padding_mask"], [[1, 1, 1, 1, 1, 0]])
    np.testing.assert_array_equal(y, [[10, 11, 12, 2, 0, 0]])
    np.testing.assert_array_equal(weight, [[1, 1, 1, 1, 0, 0]])
    assert weight.dtype == np.float32


def test_causal_shift_equals_keras_hub_on_the_same_packed_tokens():
    import keras_hub

    class Tokenizer(keras_hub.tokenizers.ByteTokenizer):
        start_token_id, end_token_id, pad_token_id = 256, 257, 0
        special_token_ids = [0, 256, 257]

    preprocessor = keras_hub.models.CausalLMPreprocessor(tokenizer=Tokenizer(), sequence_length=6)
    x, y, weight = preprocessor(["abc"])
    packed = np.array([[256, 97, 98, 99, 257, 0, 0]])
    ours = lm.causal_shift(packed, (packed != 0).astype("int32"))
    np.testing.assert_array_equal(np.asarray(x["token_ids"]), ours[0]["token_ids"])
    np.testing.assert_array_equal(
        np.asarray(x["padding_mask"]).astype("int32"), ours[0]["padding_mask"]
    )
    np.testing.assert_array_equal(np.asarray(y), ours[1])
    np.testing.assert_array_equal(np.asarray(weight).astype("float32"), ours[2])


def test_documents_are_windows_of_start_text_end(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("abcdefg\n\nhi\n\n\nxy\n\nuv\n\nrs\n")
    data = lm.load_lm(
        str(path), sequence_length=4, seed=0, validation_fraction=0.2, test_fraction=0.2
    )
    rows = {tuple(row) for split in lm.SPLITS for row in data.split(split).token_ids}
    # "abcdefg": [1, a..g, 2] (9 tokens) in windows of 5 with stride 4.
    long = [START] + _ids("abcdefg") + [END]
    assert tuple(long[0:5]) in rows and tuple(long[4:9]) in rows
    assert tuple([START] + _ids("hi") + [END, PAD]) in rows
    # Every target token of every document is predicted exactly once.
    total = sum(data.split(split).num_target_tokens for split in lm.SPLITS)
    assert total == sum(len(text) + 1 for text in ["abcdefg", "hi", "xy", "uv", "rs"])


def test_splits_are_seeded_and_disjoint_by_document(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(f"document {i}" for i in range(20)))

    def split_texts(seed):
        data = lm.load_lm(str(path), sequence_length=32, seed=seed)
        return [
            sorted(data.tokenizer.decode(row) for row in data.split(s).token_ids) for s in lm.SPLITS
        ]

    first = split_texts(0)
    assert first == split_texts(0) and first != split_texts(1)
    assert [len(part) for part in first] == [16, 2, 2]
    assert not set(first[0]) & (set(first[1]) | set(first[2]))


def test_block_split_covers_the_stream(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(["abcdef", "ghijk", "lmnop", "qrstu"]))
    data = lm.load_lm(str(path), sequence_length=3, split_by="block", seed=0)
    stream = (
        [START]
        + _ids("abcdef")
        + [END]
        + _ids("ghijk")
        + [END]
        + _ids("lmnop")
        + [END]
        + _ids("qrstu")
        + [END]
    )
    blocks = sorted(
        tuple(int(t) for t, m in zip(row, mask) if m)
        for s in lm.SPLITS
        for row, mask in zip(data.split(s).token_ids, data.split(s).padding_mask)
    )
    assert blocks == sorted(tuple(stream[i : i + 4]) for i in range(0, len(stream), 4))


def test_prompt_tokens_are_masked_out_of_the_loss(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [{"question": f"q{i}", "answer": "ok"} for i in range(10)]
    path.write_text("\n".join(json.dumps(row) for row in rows))
    data = lm.load_lm(
        str(path), sequence_length=7, prompt_column="question", completion_column="answer"
    )
    assert data.has_prompts
    x, y, weight = data.train.shifted()
    row = list(x["token_ids"][0])
    prompt = row[1:3]
    assert row == [START] + prompt + _ids("ok") + [END, PAD]
    np.testing.assert_array_equal(y[0], prompt + _ids("ok") + [END, PAD, PAD])
    # Targets: the prompt's two tokens (0), then "o", "k", end (1), then padding (0).
    np.testing.assert_array_equal(weight[0], [0, 0, 1, 1, 1, 0, 0])


def test_bad_input_is_refused_by_flag(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n")
    with pytest.raises(ValueError, match="--prompt_column 'question' is not a field"):
        lm.load_lm(str(path), 8, prompt_column="question")
    with pytest.raises(ValueError, match="--completion_column 'answer' is not a field"):
        lm.load_lm(str(path), 8, completion_column="answer")
    with pytest.raises(ValueError, match="--split_by must be one of"):
        lm.load_lm(str(path), 8, split_by="sentence")
    with pytest.raises(ValueError, match="--sequence_length must be a positive integer"):
        lm.load_lm(str(path), 0)
    with pytest.raises(ValueError, match="no such file or directory"):
        lm.load_lm(str(tmp_path / "missing.txt"), 8)
    with pytest.raises(ValueError, match="cannot give train, validation and test"):
        lm.load_lm(str(path), 8)


def test_stdlib_corpus_is_seeded_and_atomic(tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    documents, size = lm.build_stdlib_corpus(str(first), seed=0, max_bytes=20000)
    assert lm.build_stdlib_corpus(str(second), seed=0, max_bytes=20000) == (documents, size)
    assert first.read_bytes() == second.read_bytes() and 0 < size <= 20000
    assert len(lm.read_documents(str(first))) == documents
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]
    lm.build_stdlib_corpus(str(second), seed=1, max_bytes=20000)
    assert first.read_bytes() != second.read_bytes()


def test_the_classifier_data_reader_points_lm_data_to_the_lm_run():
    import types

    from tfkd.data import sources

    with pytest.raises(
        ValueError, match="is causal-language-model data, which `tfkd distill` distils into a"
    ):
        sources.read_source(types.SimpleNamespace(dataset="lm:corpus.txt"))


def test_epoch_batches_report_their_count_so_keras_runs_no_extra_step():
    import keras
    import tensorflow as tf
    from keras import ops

    from tfkd.data.language_modeling import epoch_batches

    class ConstantLoss(keras.Model):
        def __init__(self):
            super().__init__()
            self.tracker = keras.metrics.Mean(name="loss")

        @property
        def metrics(self):
            return [self.tracker]

        def test_step(self, rows):
            self.tracker.update_state(ops.cast(ops.shape(rows)[0], "float32") * 0 + 5.0)
            return {"loss": self.tracker.result()}

    orders = np.stack([np.random.default_rng([0, epoch]).permutation(10) for epoch in range(2)])
    batches = epoch_batches(orders, 4)
    assert int(batches.cardinality()) == 2 * 3  # ceil(10 / 4) batches per epoch
    assert [len(b) for b in batches.as_numpy_iterator()] == [4, 4, 2, 4, 4, 2]
    assert np.array_equal(np.concatenate(list(batches.as_numpy_iterator())), orders.ravel())
    model = ConstantLoss()
    model.compile()
    # Every step reports 5: a mean below 5 would count a step that did not happen.
    assert model.evaluate(batches.map(lambda r: tf.cast(r, "float32")), verbose=0) == 5.0
