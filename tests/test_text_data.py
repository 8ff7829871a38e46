"""Text data: text: folders, csv: tables, tensorflow-datasets text sets, the generated corpus,
and tokenization with a vocabulary fitted on the training split only."""

import dataclasses
import json
import os

import numpy as np
import pytest

from tfkd import data
from tfkd.data import DataConfig, load, pipeline, text, tfds_source, tokenizers

CLASSES = ("alpha", "beta")
# Class words never overlap, so labels follow from words.
WORDS = {"alpha": ["apple", "anchor", "arrow"], "beta": ["banana", "bottle", "button"]}


def _texts(label_name, count, seed, extra=""):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS[label_name], 4)) + extra for _ in range(count)]


@pytest.fixture
def text_folder(tmp_path):
    """train/: 10 texts per class; test/: 4 per class, each holding "zeppelin", a word that
    never occurs in train."""
    for split, count, extra in (("train", 10, ""), ("test", 4, " zeppelin")):
        for index, name in enumerate(CLASSES):
            texts = _texts(name, count, seed=index + (10 if split == "test" else 0), extra=extra)
            text.write_text_folder(str(tmp_path), texts, [0] * count, [name], split)
    return str(tmp_path)


def test_text_folder_reads_classes_in_sorted_order(text_folder):
    source = text.read_text_folder(text_folder)
    assert source.class_names == list(CLASSES) and source.num_classes == 2
    train_texts, train_labels = source.train
    assert len(train_texts) == 20 and np.bincount(train_labels).tolist() == [10, 10]
    for sentence, label in zip(train_texts, train_labels, strict=True):
        assert set(sentence.split()) <= set(WORDS[CLASSES[label]])


def test_vocabulary_is_fitted_on_the_training_split_only(text_folder):
    bundle = load(
        DataConfig(
            f"text:{text_folder}", validation_fraction=0.0, sequence_length=12, vocabulary_size=200
        )
    )
    vocabulary = bundle.tokenizer.vocabulary
    assert vocabulary[:5] == tokenizers.RESERVED_TOKENS
    assert all(word in vocabulary for words in WORDS.values() for word in words)
    assert "zeppelin" not in vocabulary  # a test-only word is out of vocabulary
    unknown = vocabulary.index("[UNK]")
    cls, sep = vocabulary.index("[CLS]"), vocabulary.index("[SEP]")
    # Every test text is "[CLS] w1 w2 w3 w4 [UNK] [SEP]" padded with 0 to 12 tokens.
    for ids, label in zip(bundle.test[0], bundle.test[1], strict=True):
        assert ids[0] == cls and ids[5] == unknown and ids[6] == sep
        assert set(ids[7:]) == {0}
        assert {vocabulary[k] for k in ids[1:5]} <= set(WORDS[CLASSES[label]])
    assert bundle.input_shape == (12,) and bundle.train[0].dtype == np.int32
    assert bundle.vocabulary_size == len(vocabulary)


def test_byte_tokenizer_gives_utf8_bytes_and_padding_masks(tmp_path):
    table = tmp_path / "table"
    table.mkdir()
    for split in ("train", "test"):
        (table / f"{split}.csv").write_text("text,label\nhé,0\nab cd efgh ij,1\n", "utf-8")
    bundle = load(
        DataConfig(f"csv:{table}", validation_fraction=0.0, tokenizer="byte", sequence_length=6)
    )
    expected = [list("hé".encode()) + [0] * 3, list(b"ab cd ")]
    np.testing.assert_array_equal(bundle.train[0], expected)
    inputs = data.to_float(bundle.train[0])
    np.testing.assert_array_equal(inputs["padding_mask"], np.array(expected) != 0)
    np.testing.assert_array_equal(inputs["segment_ids"], np.zeros((2, 6)))
    graph = pipeline.convert(np.asarray(bundle.train[0]))
    for key, value in inputs.items():
        np.testing.assert_array_equal(np.asarray(graph[key]), value)


@pytest.mark.parametrize("extension", ["csv", "tsv", "jsonl"])
def test_tables_with_named_columns_and_label_names(tmp_path, extension):
    rows = {
        "train": [("good film", "pos"), ("bad film", "neg"), ("great", "pos")],
        "test": [("awful", "neg")],
    }
    for split, examples in rows.items():
        path = tmp_path / f"{split}.{extension}"
        if extension == "jsonl":
            path.write_text(
                "".join(json.dumps({"review": t, "sentiment": s}) + "\n" for t, s in examples)
            )
        else:
            separator = "\t" if extension == "tsv" else ","
            path.write_text(
                f"review{separator}sentiment\n"
                + "".join(f"{t}{separator}{s}\n" for t, s in examples)
            )
    source = text.read_csv(str(tmp_path), "review", "sentiment")
    assert source.class_names == ["neg", "pos"]
    assert source.train[1].tolist() == [1, 0, 1] and source.test[1].tolist() == [0]
    assert source.train[0].tolist() == ["good film", "bad film", "great"]


def test_one_table_file_holds_out_a_stratified_fifth(tmp_path):
    path = tmp_path / "all.csv"
    path.write_text("text,label\n" + "".join(f"text {k},{k % 2}\n" for k in range(20)))
    source = text.read_csv(str(path), seed=3)
    assert np.bincount(source.test[1]).tolist() == [2, 2]
    assert np.bincount(source.train[1]).tolist() == [8, 8]
    assert not set(source.train[0]) & set(source.test[0])


def test_subsets_and_validation_split_are_stratified_and_seeded():
    config = DataConfig(
        "text_synthetic",
        synthetic_size=200,
        synthetic_classes=4,
        validation_fraction=0.25,
        train_limit=40,
        sequence_length=8,
        vocabulary_size=100,
        seed=5,
    )
    bundle = load(config)
    whole = load(dataclasses.replace(config, train_limit=None))
    # Each class keeps its share of the training split, to within one example.
    share = np.bincount(whole.train[1]) * 40 / len(whole.train[1])
    assert np.all(np.abs(np.bincount(bundle.train[1]) - share) < 1)
    assert len(bundle.train[1]) == 40
    assert len(bundle.validation[1]) == 40 and len(bundle.test[1]) == 40
    np.testing.assert_array_equal(bundle.validation[1], whole.validation[1])
    again = load(config)
    np.testing.assert_array_equal(again.train[0], bundle.train[0])
    assert again.tokenizer.vocabulary == bundle.tokenizer.vocabulary


def test_generated_corpus_uses_class_words():
    texts, labels, names = text.make_text_corpus(60, 3, seed=0)
    assert np.bincount(labels).tolist() == [20, 20, 20] and len(names) == 3
    again, _, _ = text.make_text_corpus(60, 3, seed=0)
    assert again.tolist() == texts.tolist()
    # The words most frequent in a class's texts and rare elsewhere identify it.
    counts = [{} for _ in range(3)]
    for sentence, label in zip(texts, labels, strict=True):
        for word in sentence.split():
            counts[label][word] = counts[label].get(word, 0) + 1
    tops = [max(c, key=c.get) for c in counts]
    assert len(set(tops)) == 3


def test_negated_texts_carry_a_marker_and_the_next_class_words():
    plain, labels, _ = text.make_text_corpus(400, 4, seed=2)
    negated, negated_labels, _ = text.make_text_corpus(
        400, 4, seed=2, style=text.CorpusStyle(negation_share=1.0)
    )
    np.testing.assert_array_equal(labels, negated_labels)

    def class_words(texts, labels):
        # Per class, its 12 most frequent words: mostly its topic words (12 per class).
        counts = [{} for _ in range(4)]
        for sentence, label in zip(texts, labels, strict=True):
            for word in sentence.split():
                counts[label][word] = counts[label].get(word, 0) + 1
        return [set(sorted(c, key=c.get, reverse=True)[:12]) for c in counts]

    plain_words, negated_words = class_words(plain, labels), class_words(negated, labels)
    # Negated class k uses the topic words that plain class k + 1 uses.
    for k in range(4):
        assert len(negated_words[k] & plain_words[(k + 1) % 4]) >= 8
        assert not negated_words[k] & plain_words[k]
    vocabulary = {word for sentence in plain for word in sentence.split()}
    markers = {word for sentence in negated for word in sentence.split()} - vocabulary
    assert 1 <= len(markers) <= 3
    assert all(len(set(sentence.split()) & markers) == 1 for sentence in negated)


def test_lead_words_carry_the_class_and_the_rest_another_class():
    plain, labels, _ = text.make_text_corpus(400, 4, seed=3)
    led, led_labels, _ = text.make_text_corpus(400, 4, seed=3, style=text.CorpusStyle(lead_words=6))
    np.testing.assert_array_equal(labels, led_labels)
    counts = [{} for _ in range(4)]
    for sentence, label in zip(plain, labels, strict=True):
        for word in sentence.split():
            counts[label][word] = counts[label].get(word, 0) + 1
    topic = [set(sorted(c, key=c.get, reverse=True)[:12]) for c in counts]
    lead_hits = rest_hits = other_hits = 0
    for sentence, label in zip(led, labels, strict=True):
        words = sentence.split()
        lead_hits += sum(word in topic[label] for word in words[:6])
        rest_hits += sum(word in topic[label] for word in words[6:])
        other_hits += sum(word in topic[k] for word in words[6:] for k in range(4) if k != label)
    # The lead speaks for the class; after it, the topic words are mostly other classes'.
    assert lead_hits > 3 * rest_hits and other_hits > 3 * rest_hits


def test_tfds_text_sets_through_mock_data(monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds_source, "internet_reachable", lambda *args, **kwargs: True)
    with tfds.testing.mock_data(num_examples=12):
        bundle = load(
            DataConfig(
                "imdb_reviews", validation_fraction=0.25, tokenizer="byte", sequence_length=16
            )
        )
    assert bundle.num_classes == 2 and bundle.class_names == ["neg", "pos"]
    assert bundle.train[0].shape == (9, 16) and bundle.test[0].shape == (12, 16)
    assert bundle.train[0].dtype == np.int32


def test_glue_sst2_reads_its_validation_split_as_test(monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds_source, "internet_reachable", lambda *args, **kwargs: True)
    with tfds.testing.mock_data(num_examples=10):
        source = text.read_tfds_text("glue/sst2")
    assert len(source.train[0]) == 10 and len(source.test[0]) == 10
    assert source.num_classes == 2 and all(isinstance(t, str) for t in source.test[0])


# ------------------------------------------------------------------------------- bad input


def _table(tmp_path, train_rows, test_rows, header="text,label"):
    for split, rows in (("train", train_rows), ("test", test_rows)):
        (tmp_path / f"{split}.csv").write_text(header + "\n" + "".join(r + "\n" for r in rows))
    return f"csv:{tmp_path}"


def test_missing_text_column_names_the_flag(tmp_path):
    dataset = _table(tmp_path, ["a,0", "b,1"], ["c,0"], header="body,label")
    with pytest.raises(
        ValueError,
        match=r"^--text_column: 'text' is not a column of .*train"
        r"\.csv; columns: body, label$",
    ):
        load(DataConfig(dataset))


def test_empty_text_names_the_flag(tmp_path):
    dataset = _table(tmp_path, ["a,0", " ,1"], ["c,0"])
    with pytest.raises(ValueError, match=r"^--text_column: row 2 of .*train\.csv has an empty"):
        load(DataConfig(dataset))
    folder = tmp_path / "folder"
    text.write_text_folder(str(folder), ["x", "y"], [0, 1], ["a", "b"], "train")
    text.write_text_folder(str(folder), ["x", "y"], [0, 1], ["a", "b"], "test")
    (folder / "train" / "b" / "000001.txt").write_text("  \n")
    with pytest.raises(ValueError, match=r"^--dataset text:.*train/b/000001\.txt is empty$"):
        load(DataConfig(f"text:{folder}"))


def test_labels_out_of_range_name_the_flag(tmp_path):
    dataset = _table(tmp_path, ["a,0", "b,1"], ["c,2"])
    with pytest.raises(
        ValueError,
        match=r"^--label_column: label 2 in .*test\.csv is outside "
        r"\[0, 2\)",
    ):
        load(DataConfig(dataset))
    dataset = _table(tmp_path, ["a,0", "b,-1"], ["c,0"])
    with pytest.raises(ValueError, match=r"^--label_column: label -1 in .*train\.csv"):
        load(DataConfig(dataset))


def test_sequence_length_below_two_names_the_flag():
    with pytest.raises(ValueError, match=r"sequence_length.* >= 2, got 1"):
        DataConfig("text_synthetic", sequence_length=1)
    with pytest.raises(ValueError, match=r"^--sequence_length must be an integer >= 2"):
        tokenizers.make_tokenizer("byte", 1, [], 10)


def test_text_folder_with_one_class_is_refused(tmp_path):
    for split in ("train", "test"):
        text.write_text_folder(str(tmp_path), ["some text"], [0], ["only"], split)
    with pytest.raises(
        ValueError,
        match=r"^--dataset text:.*: train/ has 1 class folder\(s\) "
        r"\['only'\]; a classifier needs at least 2$",
    ):
        load(DataConfig(f"text:{tmp_path}"))
    assert os.path.isdir(tmp_path / "train" / "only")
