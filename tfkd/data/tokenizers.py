"""The tokenizer of a text data set: KerasHub WordPiece (fitted on the training split) or bytes.

Token ids are packed into int32 [N, sequence_length] arrays with 0 as padding: WordPiece
sequences are `[CLS] pieces... [SEP]` (BERT's layout), byte sequences are the UTF-8 bytes
(a NUL byte, id 0, never occurs in text). The padding mask is `token_ids != 0` and the segment
ids are 0, so the token ids alone determine a model's dict inputs (`text_inputs`).
"""

import dataclasses
import hashlib
import os

import numpy as np

from tfkd.atomic import atomic_file

TOKENIZERS = ("wordpiece", "byte")
RESERVED_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]")
VOCABULARY_FILE = "vocabulary.txt"
BYTE_VOCABULARY_SIZE = 256
_ENCODE_CHUNK = 4096


def text_inputs(token_ids):
    """int32 token ids [N, L] -> the KerasHub dict inputs, each int32 [N, L] (NumPy)."""
    token_ids = np.asarray(token_ids, np.int32)
    return {
        "token_ids": token_ids,
        "padding_mask": (token_ids != 0).astype(np.int32),
        "segment_ids": np.zeros_like(token_ids),
    }


@dataclasses.dataclass(frozen=True)
class TextTokenizer:
    """How texts become token ids.

    Attributes:
      kind: "wordpiece" or "byte".
      sequence_length: tokens per example, special tokens included (>= 2).
      vocabulary: the WordPiece tokens, index = id ([PAD] first); None for bytes.
      source: where the vocabulary came from (a file, or "fitted on N training texts").
    """

    kind: str
    sequence_length: int
    vocabulary: tuple | None = None
    source: str = ""

    @property
    def vocabulary_size(self):
        return BYTE_VOCABULARY_SIZE if self.kind == "byte" else len(self.vocabulary)

    def fingerprint(self):
        """A short digest naming the vocabulary (two tokenizers agree iff their ids mean the
        same tokens)."""
        tokens = "\n".join(self.vocabulary) if self.vocabulary else "utf-8 bytes"
        return hashlib.blake2b(f"{self.kind}\n{tokens}".encode(), digest_size=6).hexdigest()

    def describe(self):
        where = f", {self.source}" if self.source else ""
        return (
            f"{self.kind} vocabulary of {self.vocabulary_size} tokens [{self.fingerprint()}{where}]"
        )

    def keras_tokenizer(self):
        """The KerasHub tokenizer (string -> ragged ids, no special tokens)."""
        import keras_hub

        if self.kind == "byte":
            return keras_hub.tokenizers.ByteTokenizer(lowercase=False)
        return keras_hub.tokenizers.WordPieceTokenizer(
            vocabulary=list(self.vocabulary), lowercase=True, strip_accents=True
        )

    def packer(self):
        """The KerasHub StartEndPacker that pads or truncates to `sequence_length`."""
        import keras_hub

        if self.kind == "byte":
            return keras_hub.layers.StartEndPacker(self.sequence_length, pad_value=0)
        return keras_hub.layers.StartEndPacker(
            self.sequence_length,
            start_value=self.vocabulary.index("[CLS]"),
            end_value=self.vocabulary.index("[SEP]"),
            pad_value=0,
        )

    def encode(self, texts):
        """Python or NumPy strings [N] -> int32 token ids [N, sequence_length]."""
        import tensorflow as tf

        tokenizer, packer = self.keras_tokenizer(), self.packer()
        texts = [str(text) for text in texts]
        chunks = [
            np.asarray(packer(tokenizer(tf.constant(texts[start : start + _ENCODE_CHUNK]))))
            for start in range(0, len(texts), _ENCODE_CHUNK)
        ]
        if not chunks:
            return np.zeros((0, self.sequence_length), np.int32)
        return np.concatenate(chunks).astype(np.int32)

    def save(self, directory):
        """Writes the WordPiece vocabulary as `directory/vocabulary.txt` (one token per line);
        returns its path, or None for bytes."""
        if self.kind == "byte":
            return None
        path = os.path.join(directory, VOCABULARY_FILE)
        with atomic_file(path, "w", encoding="utf-8") as handle:
            handle.write("\n".join(self.vocabulary) + "\n")
        return path


def read_vocabulary(path, flag="--vocabulary"):
    """One token per line -> tuple of tokens, checked for BERT's special tokens."""
    if not os.path.isfile(path):
        raise ValueError(f"{flag}: {path} does not exist")
    with open(path, encoding="utf-8") as handle:
        tokens = tuple(line.rstrip("\n") for line in handle if line.rstrip("\n"))
    missing = [token for token in RESERVED_TOKENS[:4] if token not in tokens]
    if missing or tokens[:1] != ("[PAD]",):
        raise ValueError(
            f"{flag}: {path} must start with [PAD] and hold "
            f"{', '.join(RESERVED_TOKENS[:4])}; missing {missing or ['[PAD] first']}"
        )
    return tokens


def fit_wordpiece(texts, vocabulary_size):
    """A WordPiece vocabulary of at most `vocabulary_size` tokens learnt from `texts` only
    (lower-cased, accents stripped), BERT's reserved tokens first."""
    import keras_hub
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices([str(text) for text in texts]).batch(1024)
    vocabulary = keras_hub.tokenizers.compute_word_piece_vocabulary(
        dataset,
        vocabulary_size,
        lowercase=True,
        strip_accents=True,
        reserved_tokens=list(RESERVED_TOKENS),
    )
    return tuple(vocabulary)


def make_tokenizer(kind, sequence_length, train_texts, vocabulary_size, vocabulary_path=None):
    """The tokenizer of a run: bytes, a given vocabulary file, or WordPiece fitted on the
    training texts (never on validation or test texts)."""
    if kind not in TOKENIZERS:
        raise ValueError(f"--tokenizer must be one of {', '.join(TOKENIZERS)}, got {kind!r}")
    if sequence_length is None or sequence_length < 2:
        raise ValueError(
            f"--sequence_length must be an integer >= 2 (room for [CLS] and "
            f"[SEP]), got {sequence_length}"
        )
    if kind == "byte":
        return TextTokenizer("byte", sequence_length, None, "UTF-8 bytes")
    if vocabulary_path:
        return TextTokenizer(
            "wordpiece", sequence_length, read_vocabulary(vocabulary_path), vocabulary_path
        )
    if vocabulary_size < len(RESERVED_TOKENS) + 1:
        raise ValueError(
            f"--vocabulary_size must be > {len(RESERVED_TOKENS)} (BERT's "
            f"reserved tokens plus one), got {vocabulary_size}"
        )
    return TextTokenizer(
        "wordpiece",
        sequence_length,
        fit_wordpiece(train_texts, vocabulary_size),
        f"fitted on {len(train_texts)} training texts",
    )
