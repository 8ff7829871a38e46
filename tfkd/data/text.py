"""Text data sets: class folders of .txt files, CSV/TSV/JSONL tables, tensorflow-datasets text
sets and a generated corpus; each read as strings, then tokenized (`tfkd.data.tokenizers`).

    --dataset=text:DIR         DIR/train/<class>/*.txt and DIR/test/<class>/*.txt
    --dataset=csv:DIR          DIR/train.csv|tsv|jsonl and DIR/test.*
                               (--text_column, --label_column)
    --dataset=csv:FILE         one table; a stratified 20% becomes the test split
    --dataset=imdb_reviews     also ag_news_subset and glue/sst2 (its validation split as test)
    --dataset=text_synthetic   a seeded corpus with class-dependent words and shared noise words
"""

import csv
import dataclasses
import json
import os

import numpy as np

from tfkd.data import splits
from tfkd.data.bundle import SYNTHETIC_TRAIN_SHARE, SourceData

TABLE_EXTENSIONS = (".csv", ".tsv", ".jsonl")
# tensorflow-datasets name -> (text feature, label feature, test split).
TFDS_TEXT = {
    "imdb_reviews": ("text", "label", "test"),
    "ag_news_subset": ("description", "label", "test"),
    "glue/sst2": ("sentence", "label", "validation"),
}


def is_text(x):
    """True for an array of strings (a text split before tokenization)."""
    x = np.asarray(x)
    return x.dtype.kind in "OUS" and x.ndim == 1


def _texts(values):
    return np.array([str(value) for value in values], dtype=object)


def _check_texts(texts, where):
    for index, text in enumerate(texts):
        if not str(text).strip():
            raise ValueError(f"--text_column: {where} example {index} has an empty text")


def read_text_folder(directory):
    """DIR/train/<class>/*.txt and DIR/test/<class>/*.txt -> strings and class indices in the
    sorted order of the train class folders."""
    form = f"--dataset text:{directory}"
    folders = {split: os.path.join(directory, split) for split in ("train", "test")}
    for split, folder in folders.items():
        if not os.path.isdir(folder):
            raise ValueError(f"{form}: missing {split}/ folder of class folders")
    class_names = sorted(
        name
        for name in os.listdir(folders["train"])
        if os.path.isdir(os.path.join(folders["train"], name))
    )
    if len(class_names) < 2:
        raise ValueError(
            f"{form}: train/ has {len(class_names)} class folder(s) "
            f"{class_names}; a classifier needs at least 2"
        )
    result = {}
    for split, folder in folders.items():
        unknown = sorted(set(os.listdir(folder)) - set(class_names))
        unknown = [name for name in unknown if os.path.isdir(os.path.join(folder, name))]
        if unknown:
            raise ValueError(f"{form}: {split}/ classes {unknown} do not exist in train/")
        texts, labels = [], []
        for index, name in enumerate(class_names):
            class_folder = os.path.join(folder, name)
            if not os.path.isdir(class_folder):
                continue
            for file_name in sorted(os.listdir(class_folder)):
                if not file_name.endswith(".txt"):
                    continue
                path = os.path.join(class_folder, file_name)
                with open(path, encoding="utf-8", errors="replace") as handle:
                    text = handle.read().strip()
                if not text:
                    raise ValueError(f"{form}: {split}/{name}/{file_name} is empty")
                texts.append(text)
                labels.append(index)
        if not texts:
            raise ValueError(f"{form}: no .txt files under {split}/")
        result[split] = (_texts(texts), np.array(labels, np.int64))
    return SourceData(
        train=result["train"],
        test=result["test"],
        num_classes=len(class_names),
        class_names=class_names,
    )


def read_table(path):
    """A CSV (comma), TSV (tab) or JSONL file -> (column names, list of row dicts)."""
    if path.endswith(".jsonl"):
        with open(path, encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
        columns = sorted({key for row in rows for key in row})
        return columns, rows
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t" if path.endswith(".tsv") else ",")
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _column(rows, columns, column, flag, path):
    if column not in columns:
        raise ValueError(
            f"{flag}: {column!r} is not a column of {path}; columns: {', '.join(map(str, columns))}"
        )
    return [row.get(column) for row in rows]


def _is_integer(value):
    try:
        return float(value) == int(float(value))
    except (TypeError, ValueError):
        return False


def _table_split(path, text_column, label_column):
    columns, rows = read_table(path)
    if not rows:
        raise ValueError(f"--dataset csv: {path} has no rows")
    texts = _column(rows, columns, text_column, "--text_column", path)
    labels = _column(rows, columns, label_column, "--label_column", path)
    for index, text in enumerate(texts):
        if text is None or not str(text).strip():
            raise ValueError(
                f"--text_column: row {index + 1} of {path} has an empty {text_column!r}"
            )
    return _texts(texts), labels


def _label_indices(train_labels, test_labels, train_path, test_path):
    """Integer labels stay as they are; names become indices in sorted order of the train
    names. Returns (train [N], test [M], num_classes, class names or None)."""
    if all(_is_integer(value) for value in list(train_labels) + list(test_labels)):
        train = np.array([int(float(value)) for value in train_labels], np.int64)
        test = np.array([int(float(value)) for value in test_labels], np.int64)
        num_classes = int(train.max()) + 1
        for labels, path in ((train, train_path), (test, test_path)):
            bad = labels[(labels < 0) | (labels >= num_classes)]
            if bad.size:
                raise ValueError(
                    f"--label_column: label {int(bad[0])} in {path} is outside "
                    f"[0, {num_classes}), the classes of the training labels"
                )
        return train, test, num_classes, None
    names = sorted({str(value) for value in train_labels})
    index = {name: k for k, name in enumerate(names)}
    unknown = sorted({str(value) for value in test_labels} - set(names))
    if unknown:
        raise ValueError(
            f"--label_column: labels {unknown[:5]} in {test_path} do not occur in {train_path}"
        )
    return (
        np.array([index[str(value)] for value in train_labels], np.int64),
        np.array([index[str(value)] for value in test_labels], np.int64),
        len(names),
        names,
    )


def _find_table(directory, stem):
    for extension in TABLE_EXTENSIONS:
        path = os.path.join(directory, stem + extension)
        if os.path.isfile(path):
            return path
    raise ValueError(f"--dataset csv:{directory}: no {stem}.csv, {stem}.tsv or {stem}.jsonl")


def read_csv(path, text_column="text", label_column="label", seed=0):
    """csv:DIR (train.* and test.*) or csv:FILE (a seeded stratified 20% held out as test)."""
    if os.path.isdir(path):
        train_path, test_path = _find_table(path, "train"), _find_table(path, "test")
        train_texts, train_labels = _table_split(train_path, text_column, label_column)
        test_texts, test_labels = _table_split(test_path, text_column, label_column)
    elif os.path.isfile(path):
        if not path.endswith(TABLE_EXTENSIONS):
            raise ValueError(f"--dataset csv:{path}: expected a .csv, .tsv or .jsonl file")
        train_path = test_path = path
        texts, labels = _table_split(path, text_column, label_column)
        names = [str(label) for label in labels]
        test, train = splits.stratified_choice(
            np.unique(names, return_inverse=True)[1],
            int(round((1 - SYNTHETIC_TRAIN_SHARE) * len(names))),
            seed,
        )
        train_texts, test_texts = texts[train], texts[test]
        train_labels, test_labels = [labels[k] for k in train], [labels[k] for k in test]
    else:
        raise ValueError(f"--dataset csv:{path}: no such file or folder")
    train_y, test_y, num_classes, names = _label_indices(
        train_labels, test_labels, train_path, test_path
    )
    if num_classes < 2:
        raise ValueError(
            f"--label_column: {train_path} has {num_classes} class; a classifier needs at least 2"
        )
    return SourceData(
        train=(train_texts, train_y),
        test=(test_texts, test_y),
        num_classes=num_classes,
        class_names=names,
    )


def read_tfds_text(name, data_dir=None):
    """imdb_reviews, ag_news_subset or glue/sst2 from tensorflow-datasets as strings."""
    import tensorflow_datasets as tfds

    from tfkd.data import tfds_source

    text_key, label_key, test_split = TFDS_TEXT[name]
    builder = tfds.builder(name, data_dir=data_dir)
    tfds_source._prepare(builder, name)
    result = {}
    for split, stored in (("train", "train"), ("test", test_split)):
        arrays = tfds_source._split_arrays(builder, stored, [text_key, label_key])
        texts = _texts(
            value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            for value in arrays[text_key]
        )
        result[split] = (texts, arrays[label_key].astype(np.int64))
    label = builder.info.features[label_key]
    return SourceData(
        train=result["train"],
        test=result["test"],
        num_classes=int(label.num_classes),
        class_names=list(label.names),
    )


def _pseudo_words(count, rng, taken):
    """`count` distinct lower-case pronounceable words (consonant-vowel syllables)."""
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    words = []
    while len(words) < count:
        word = "".join(
            rng.choice(list(consonants)) + rng.choice(list(vowels))
            for _ in range(int(rng.integers(2, 4)))
        )
        if word not in taken:
            taken.add(word)
            words.append(word)
    return words


@dataclasses.dataclass(frozen=True)
class CorpusStyle:
    """How `make_text_corpus` writes its texts.

    Every text draws `length` (min, max) words: a `topic_share` of them from its class's
    `topic_words`, a `confuser_share` from the words of one other class fixed per text, the rest
    from the shared `noise_words`; so a text's class shows only through word statistics. A
    `negation_share` of the texts are negated: one of `negation_words` marker words sits at a
    random place and the topic words are those of the next class (label + 1 mod classes), so
    their class depends on an interaction of words that no bag-of-words linear model captures.
    With `lead_words`, only the first `lead_words` words speak for the class (a `lead_share` of
    them its topic words, the rest noise); the rest of the text draws its topic words from
    another class, so the class depends on where words stand, not only on which words occur.
    """

    topic_words: int = 12
    noise_words: int = 300
    length: tuple = (12, 30)
    topic_share: float = 0.2
    confuser_share: float = 0.1
    negation_share: float = 0.0
    negation_words: int = 3
    lead_words: int = 0
    lead_share: float = 0.5


def make_text_corpus(num_examples, num_classes, seed=0, style=CorpusStyle()):
    """A seeded corpus in which each class has its own words among shared noise words, written
    as `style` (a `CorpusStyle`) says.

    Returns:
      (texts object [N], labels int64 [N], class names list), classes balanced.
    """
    topic_words, noise_words, length = style.topic_words, style.noise_words, style.length
    topic_share, confuser_share = style.topic_share, style.confuser_share
    negation_share, negation_words = style.negation_share, style.negation_words
    lead_words, lead_share = style.lead_words, style.lead_share
    rng = np.random.default_rng(seed)
    taken = set()
    topics = [_pseudo_words(topic_words, rng, taken) for _ in range(num_classes)]
    noise = _pseudo_words(noise_words, rng, taken)
    markers = _pseudo_words(negation_words, rng, taken)
    labels = np.arange(num_examples) % num_classes
    rng.shuffle(labels)
    texts = []
    for label in labels:
        negated = rng.random() < negation_share
        topic = (label + 1) % num_classes if negated else label
        other = (topic + 1 + int(rng.integers(num_classes - 1))) % num_classes
        words = []
        if lead_words:
            for _ in range(lead_words):
                pool = topics[topic] if rng.random() < lead_share else noise
                words.append(pool[int(rng.integers(len(pool)))])
            topic = other  # the rest of the text is about another class
            other = (topic + 1 + int(rng.integers(num_classes - 1))) % num_classes
        for _ in range(int(rng.integers(length[0], length[1] + 1))):
            draw = rng.random()
            pool = (
                topics[topic]
                if draw < topic_share
                else topics[other]
                if draw < topic_share + confuser_share
                else noise
            )
            words.append(pool[int(rng.integers(len(pool)))])
        if negated:
            position = int(rng.integers(len(words) + 1))
            words.insert(position, markers[int(rng.integers(len(markers)))])
        texts.append(" ".join(words))
    return _texts(texts), labels.astype(np.int64), [f"class_{k}" for k in range(num_classes)]


# The class of a generated text shows in its first words only; the words after them speak for
# another class. A model that knows positions (BERT) can read that, a bag of words cannot, and a
# convolution sees it only in windows that touch [CLS].
SYNTHETIC_LEAD_WORDS = 6


def read_text_synthetic(config):
    """config.synthetic_size texts of config.synthetic_classes classes (`make_text_corpus` with
    the class in the first `SYNTHETIC_LEAD_WORDS` words); the first 80% train, the rest test."""
    texts, labels, names = make_text_corpus(
        config.synthetic_size,
        config.synthetic_classes,
        config.seed,
        CorpusStyle(lead_words=SYNTHETIC_LEAD_WORDS, length=(10, 20)),
    )
    num_train = int(round(SYNTHETIC_TRAIN_SHARE * len(labels)))
    return SourceData(
        train=(texts[:num_train], labels[:num_train]),
        test=(texts[num_train:], labels[num_train:]),
        num_classes=config.synthetic_classes,
        class_names=names,
    )


def write_text_folder(directory, texts, labels, class_names, split):
    """Writes `directory/split/<class>/<index>.txt`, the text:DIR layout."""
    for index, (text, label) in enumerate(zip(texts, labels, strict=True)):
        folder = os.path.join(directory, split, class_names[int(label)])
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{index:06d}.txt"), "w", encoding="utf-8") as handle:
            handle.write(str(text) + "\n")
