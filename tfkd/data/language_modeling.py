"""Language-model data: plain text or prompt/completion pairs, tokenized and causally shifted.

    data = load_lm("corpus.txt", sequence_length=64, seed=0)
    train = data.dataset("train", batch_size=32, shuffle=True)   # (x, y, sample_weight)

Text is read as documents: the paragraphs (text between blank lines) of a file, or of every
`*.txt` file of a directory in name order. A `.jsonl` file holds prompt/completion pairs, one
JSON object a line. Tokens are bytes (`ByteTokenizer`), so no vocabulary is fitted and the
validation and test splits never meet an unknown token.

Each sequence holds `sequence_length + 1` tokens and is shifted as KerasHub's
`CausalLMPreprocessor` does it: x = {"token_ids": tokens[:-1], "padding_mask": mask[:-1]},
y = tokens[1:], sample_weight = mask[1:] (times the loss mask that leaves prompts out).
"""

import ast
import dataclasses
import functools
import json
import os
import re
import sysconfig

import numpy as np

from tfkd.atomic import atomic_file

SPLITS = ("train", "validation", "test")
SPLIT_BY = ("document", "block")
STDLIB = "stdlib"  # --dataset=stdlib: the standard library's docstrings (`build_stdlib_corpus`)
LM_PREFIX = "lm:"


def is_language_model_data(dataset):
    """True for the data sets a causal LM is distilled on: `stdlib` and `lm:FILE_OR_DIR`."""
    return dataset == STDLIB or dataset.startswith(LM_PREFIX)


def epoch_batches(orders, batch_size):
    """A `tf.data.Dataset` of int64 row batches: every epoch's order (int [epochs, N]) cut into
    batches of `batch_size` rows, the last of an epoch possibly shorter; so the batches are a
    function of the orders alone, and a resumed run can skip the steps it has done."""
    import tensorflow as tf

    orders = np.asarray(orders, "int64")
    batches = tf.data.Dataset.from_tensor_slices(orders).flat_map(
        lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch_size)
    )
    # flat_map hides the count; with an unknown cardinality Keras reports one step too many.
    steps = len(orders) * -(-orders.shape[-1] // batch_size) if orders.size else 0
    return batches.apply(tf.data.experimental.assert_cardinality(steps))


def shuffled_orders(count, epochs, seed, first_epoch=0):
    """int [epochs - first_epoch, count]: epoch e's order is a permutation seeded by (seed, e)."""
    return (
        np.stack(
            [
                np.random.default_rng([seed, epoch]).permutation(count)
                for epoch in range(first_epoch, epochs)
            ]
        )
        if epochs > first_epoch
        else np.zeros((0, count), "int64")
    )


class ByteTokenizer:
    """UTF-8 bytes as tokens 3..258, after padding 0, start 1 and end 2."""

    pad_token_id, start_token_id, end_token_id = 0, 1, 2
    offset = 3
    vocabulary_size = 256 + offset

    def encode(self, text):
        """str -> list of int token ids (no start or end token)."""
        return [byte + self.offset for byte in text.encode("utf-8")]

    def decode(self, token_ids):
        """Token ids -> str; special tokens are dropped, invalid UTF-8 replaced."""
        data = bytes(int(t) - self.offset for t in token_ids if int(t) >= self.offset)
        return data.decode("utf-8", errors="replace")


@dataclasses.dataclass
class TokenSplit:
    """Sequences of `sequence_length + 1` tokens, each int32 [sequences, sequence_length + 1]:
    `token_ids`, `padding_mask` (1 on real tokens) and `loss_mask` (1 on tokens to predict:
    0 on prompts)."""

    token_ids: np.ndarray
    padding_mask: np.ndarray
    loss_mask: np.ndarray

    def __len__(self):
        return len(self.token_ids)

    def shifted(self):
        """(x, y, sample_weight) as KerasHub's causal-LM preprocessor gives them."""
        return causal_shift(self.token_ids, self.padding_mask, self.loss_mask)

    @property
    def num_target_tokens(self):
        return int(self.shifted()[2].sum())


def causal_shift(token_ids, padding_mask, loss_mask=None):
    """Next-token inputs and targets from sequences [..., L]: x's arrays and y are [..., L - 1].

    Returns:
      (x, y, sample_weight): x = {"token_ids": token_ids[..., :-1],
      "padding_mask": padding_mask[..., :-1]}, y = token_ids[..., 1:] and sample_weight =
      padding_mask[..., 1:] * loss_mask[..., 1:] as float32.
    """
    token_ids = np.asarray(token_ids, "int32")
    padding_mask = np.asarray(padding_mask, "int32")
    weight = padding_mask if loss_mask is None else padding_mask * np.asarray(loss_mask, "int32")
    x = {"token_ids": token_ids[..., :-1], "padding_mask": padding_mask[..., :-1]}
    return x, token_ids[..., 1:], weight[..., 1:].astype("float32")


@dataclasses.dataclass
class LMData:
    """Tokenized splits of a language-model data set."""

    train: TokenSplit
    validation: TokenSplit
    test: TokenSplit
    tokenizer: ByteTokenizer
    sequence_length: int
    source: str
    has_prompts: bool = False

    @property
    def vocabulary_size(self):
        return self.tokenizer.vocabulary_size

    def split(self, name):
        if name not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {name!r}")
        return getattr(self, name)

    def dataset(self, split, batch_size, shuffle=False, seed=0, drop_remainder=False, orders=None):
        """A `tf.data.Dataset` of (x, y, sample_weight) batches of `split`; with `orders`
        (int [epochs, N]) the batches of those epochs in those orders (`epoch_batches`)."""
        import tensorflow as tf

        x, y, weight = self.split(split).shifted()
        if orders is not None:
            arrays = tf.nest.map_structure(tf.constant, (x, y, weight))
            return (
                epoch_batches(orders, batch_size)
                .map(lambda rows: tf.nest.map_structure(lambda a: tf.gather(a, rows), arrays))
                .prefetch(2)
            )
        dataset = tf.data.Dataset.from_tensor_slices((x, y, weight))
        if shuffle:
            dataset = dataset.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
        return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(2)


def read_documents(path):
    """The documents of a text file or directory: non-empty paragraphs, in reading order."""
    path = os.path.expanduser(path)
    if os.path.isdir(path):
        files = sorted(
            os.path.join(path, name) for name in os.listdir(path) if name.endswith(".txt")
        )
        if not files:
            raise ValueError(f"--dataset lm:{path}: the directory holds no .txt file")
    elif os.path.isfile(path):
        files = [path]
    else:
        raise ValueError(f"--dataset lm:{path}: no such file or directory")
    documents = []
    for file in files:
        with open(file, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        documents.extend(p.strip("\n") for p in re.split(r"\n\s*\n", text) if p.strip())
    if not documents:
        raise ValueError(f"--dataset lm:{path}: no text found")
    return documents


def pack(sequences, loss_masks, length, pad_id):
    """Right-pads token lists to `length`, returning a TokenSplit."""
    count = len(sequences)
    token_ids = np.full((count, length), pad_id, "int32")
    padding_mask = np.zeros((count, length), "int32")
    loss_mask = np.zeros((count, length), "int32")
    for row, (tokens, mask) in enumerate(zip(sequences, loss_masks)):
        token_ids[row, : len(tokens)] = tokens
        padding_mask[row, : len(tokens)] = 1
        loss_mask[row, : len(tokens)] = mask
    return TokenSplit(token_ids, padding_mask, loss_mask)


def windows(tokens, length):
    """Windows of `length` tokens with stride `length - 1`: every token after the first is a
    target of exactly one window; a window of a single token (nothing to predict) is dropped."""
    stride = length - 1
    return [tokens[start : start + length] for start in range(0, max(len(tokens) - 1, 1), stride)]


def _split_counts(count, validation_fraction, test_fraction, unit, source):
    validation = int(round(validation_fraction * count))
    test = int(round(test_fraction * count))
    if min(validation, test, count - validation - test) < 1:
        raise ValueError(
            f"--dataset {source}: {count} {unit}s cannot give train, validation "
            f"and test at least one {unit} each with validation_fraction "
            f"{validation_fraction} and test_fraction {test_fraction}"
        )
    return count - validation - test, validation


def _assign(items, seed, validation_fraction, test_fraction, unit, source):
    order = np.random.default_rng(seed).permutation(len(items))
    train, validation = _split_counts(len(items), validation_fraction, test_fraction, unit, source)
    parts = np.split(order, [train, train + validation])
    return [[items[i] for i in part] for part in parts]


def read_pairs(path, prompt_column, completion_column):
    """[(prompt, completion)] from a JSONL file; a missing column is refused by its flag."""
    pairs = []
    with open(os.path.expanduser(path), encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            for flag, column in (
                ("prompt_column", prompt_column),
                ("completion_column", completion_column),
            ):
                if column not in row:
                    raise ValueError(
                        f"--{flag} {column!r} is not a field of {path} line "
                        f"{number}; its fields: {', '.join(sorted(row))}"
                    )
            pairs.append((str(row[prompt_column]), str(row[completion_column])))
    if not pairs:
        raise ValueError(f"--dataset lm:{path}: no prompt/completion pairs found")
    return pairs


def load_lm(
    path,
    sequence_length,
    split_by="document",
    validation_fraction=0.1,
    test_fraction=0.1,
    seed=0,
    prompt_column=None,
    completion_column=None,
):
    """Reads, splits (seeded) and tokenizes a language-model data set.

    Args:
      path: a text file or directory of `.txt` files, or a `.jsonl` file of prompt/completion
        pairs (then `prompt_column` and `completion_column` name its fields; defaults "prompt"
        and "completion").
      sequence_length: model input length; sequences hold `sequence_length + 1` tokens.
      split_by: "document": whole documents (or pairs) go to one split, each document
        [start] text [end] cut into windows; "block": the corpus as one stream of documents
        each followed by the end token, cut into blocks that are then split.
      validation_fraction, test_fraction: shares of documents (or blocks) for those splits.
      seed: the split's permutation.

    Returns:
      LMData whose splits are `TokenSplit`s of [sequences, sequence_length + 1].
    """
    if not isinstance(sequence_length, int) or sequence_length < 1:
        raise ValueError(f"--sequence_length must be a positive integer; got {sequence_length!r}")
    if split_by not in SPLIT_BY:
        raise ValueError(f"--split_by must be one of {', '.join(SPLIT_BY)}; got {split_by!r}")
    tokenizer = ByteTokenizer()
    length = sequence_length + 1
    source = f"lm:{path}"
    start, end = tokenizer.start_token_id, tokenizer.end_token_id
    is_pairs = str(path).endswith(".jsonl") or prompt_column is not None
    if is_pairs:
        pairs = read_pairs(path, prompt_column or "prompt", completion_column or "completion")
        parts = _assign(pairs, seed, validation_fraction, test_fraction, "pair", source)
        splits = [_pack_pairs(part, tokenizer, length, source) for part in parts]
    elif split_by == "document":
        documents = read_documents(path)
        parts = _assign(documents, seed, validation_fraction, test_fraction, "document", source)
        splits = []
        for part in parts:
            sequences = [
                w for doc in part for w in windows([start] + tokenizer.encode(doc) + [end], length)
            ]
            splits.append(
                pack(sequences, [[1] * len(s) for s in sequences], length, tokenizer.pad_token_id)
            )
    else:
        stream = [start]
        for document in read_documents(path):
            stream += tokenizer.encode(document) + [end]
        blocks = [stream[i : i + length] for i in range(0, len(stream) - 1, length)]
        blocks = [block for block in blocks if len(block) > 1]
        parts = _assign(blocks, seed, validation_fraction, test_fraction, "block", source)
        splits = [
            pack(part, [[1] * len(b) for b in part], length, tokenizer.pad_token_id)
            for part in parts
        ]
    return LMData(
        *splits,
        tokenizer=tokenizer,
        sequence_length=sequence_length,
        source=source,
        has_prompts=is_pairs,
    )


def _pack_pairs(pairs, tokenizer, length, source):
    sequences, masks = [], []
    for prompt, completion in pairs:
        prompt_ids = [tokenizer.start_token_id] + tokenizer.encode(prompt)
        completion_ids = tokenizer.encode(completion) + [tokenizer.end_token_id]
        if len(prompt_ids) >= length:
            raise ValueError(
                f"--sequence_length {length - 1} leaves no completion token after "
                f"the prompt {prompt[:40]!r} of {source} ({len(prompt_ids)} tokens "
                "with the start token)"
            )
        tokens = (prompt_ids + completion_ids)[:length]
        sequences.append(tokens)
        masks.append(([0] * len(prompt_ids) + [1] * len(completion_ids))[:length])
    return pack(sequences, masks, length, tokenizer.pad_token_id)


# ---- an offline corpus: the docstrings of Python's standard library ---------------------------
SKIPPED_DIRECTORIES = {
    "test",
    "tests",
    "site-packages",
    "dist-packages",
    "idlelib",
    "turtledemo",
    "__pycache__",
    "lib2to3",
    "ensurepip",
}


def stdlib_docstrings(stdlib=None):
    """Every module, class and function docstring of the standard library's Python sources
    (read with `ast`, nothing imported), blank lines removed, duplicates dropped, in path order."""
    return list(_docstrings(stdlib or sysconfig.get_paths()["stdlib"]))


@functools.lru_cache(maxsize=2)
def _docstrings(stdlib):
    seen, found = set(), []
    for folder, directories, files in os.walk(stdlib):
        directories[:] = sorted(d for d in directories if d not in SKIPPED_DIRECTORIES)
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            try:
                with open(os.path.join(folder, name), encoding="utf-8") as handle:
                    tree = ast.parse(handle.read())
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(
                    node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
                ):
                    text = ast.get_docstring(node)
                    text = "\n".join(line for line in (text or "").splitlines() if line.strip())
                    if len(text) >= 20 and text not in seen:
                        seen.add(text)
                        found.append(text)
    return tuple(found)


def build_stdlib_corpus(path, seed=0, max_bytes=None):
    """Writes the standard library's docstrings, shuffled with `seed`, one document per
    docstring (documents separated by a blank line), up to `max_bytes` of UTF-8; written to a
    temporary name and renamed, so a reader never sees half a file.

    Returns:
      (number of documents, number of bytes) written.
    """
    documents = stdlib_docstrings()
    order = np.random.default_rng(seed).permutation(len(documents))
    chosen, size = [], 0
    for index in order:
        document = documents[index] + "\n\n"
        length = len(document.encode("utf-8"))
        if max_bytes is not None and size + length > max_bytes:
            break
        chosen.append(document)
        size += length
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_file(path, encoding="utf-8") as handle:
        handle.write("".join(chosen))
    return len(chosen), size
