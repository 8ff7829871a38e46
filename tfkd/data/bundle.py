"""Plain data types of the data package: the config, the loaded bundle and the input convention."""

import dataclasses
from typing import Optional

import numpy as np

from tfkd.settings import TEACHER, ConfigError, check, setting


class DataUnavailableError(RuntimeError):
    """A data set is known but its files are not on this machine and cannot be fetched."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What to load and how to split it.

    Attributes:
      dataset: a tensorflow-datasets name (`cifar100`, `mnist`, ...), `idx:DIR`, `npz:DIR`,
        `folder:DIR` or `synthetic`.
      data_dir: tensorflow-datasets data directory; None means the tfds default.
      validation_fraction: share of the train split held out (stratified) as validation, in [0, 1).
      train_limit: keep a stratified subset of this many train examples, taken after the
        validation split is carved out, so the validation set does not shrink with it.
        None or 0 keeps everything.
      test_limit: the same for the test split.
      seed: seeds the validation split, the limits and the synthetic generator.
      synthetic_size: total synthetic examples; the first 80% are train, the last 20% test.
      synthetic_dim: input dimension of the synthetic data.
      synthetic_classes: number of synthetic classes.
      synthetic_superclasses: number of synthetic super-classes (must divide the classes).
      class_similarity: cosine similarity of each class vector to its super-class vector.
      difficulty: number of sinusoidal terms in the synthetic label function (0: linear).
      text_column, label_column: the columns of a `csv:` table holding the text and the label.
      tokenizer: text sets: "wordpiece" (a vocabulary fitted on the training split) or "byte".
      vocabulary_size: the WordPiece vocabulary's size at most.
      sequence_length: tokens per text example (special tokens included), at least 2.
      vocabulary: a WordPiece vocabulary file (one token per line) to use instead of fitting
        one, e.g. the vocabulary.txt a teacher was trained with.
    """

    dataset: str = setting(
        group="data",
        role=TEACHER,
        help="A tensorflow-datasets name, idx:DIR, npz:DIR, folder:DIR, text:DIR, "
        "csv:FILE_OR_DIR, synthetic or text_synthetic.",
    )
    data_dir: Optional[str] = setting(
        None, group="data", role=TEACHER, help="tensorflow-datasets data folder."
    )
    validation_fraction: float = setting(
        0.1,
        group="data",
        role=TEACHER,
        minimum=0,
        maximum=1,
        open_maximum=True,
        help="Fraction of train held out for validation.",
    )
    train_limit: Optional[int] = setting(
        None,
        group="data",
        role=TEACHER,
        minimum=0,
        zero_is_none=True,
        help="Stratified subset of the training split (0 = all).",
    )
    test_limit: Optional[int] = setting(
        None,
        group="data",
        role=TEACHER,
        minimum=0,
        zero_is_none=True,
        help="Stratified subset of the test split (0 = all).",
    )
    seed: int = setting(
        0, group="data", role=TEACHER, help="Seed for data splits, initialisation and shuffling."
    )
    synthetic_size: int = setting(
        20000, group="data", role=TEACHER, help="synthetic: number of examples."
    )
    synthetic_dim: int = setting(
        100, group="data", role=TEACHER, help="synthetic: input dimension d."
    )
    synthetic_classes: int = setting(
        20, group="data", role=TEACHER, help="synthetic: number of classes C."
    )
    synthetic_superclasses: int = setting(
        4, group="data", role=TEACHER, help="synthetic: number of super-classes S."
    )
    class_similarity: float = setting(
        0.5, group="data", role=TEACHER, help="synthetic: cosine of class to super-class."
    )
    difficulty: int = setting(
        4, group="data", role=TEACHER, help="synthetic: number of sine terms M (0 = separable)."
    )
    text_column: str = setting(
        "text", group="data", role=TEACHER, help="csv: the column holding the text."
    )
    label_column: str = setting(
        "label",
        group="data",
        role=TEACHER,
        help="csv: the column holding the label (integers or names).",
    )
    tokenizer: str = setting(
        "wordpiece",
        group="data",
        role=TEACHER,
        choices=("wordpiece", "byte"),
        help="Text sets: wordpiece (KerasHub WordPiece, vocabulary fitted on the training split "
        "and saved as vocabulary.txt) or byte (UTF-8 bytes, no vocabulary).",
    )
    vocabulary_size: int = setting(
        8000,
        group="data",
        role=TEACHER,
        minimum=6,
        help="Text sets: size of the fitted WordPiece vocabulary.",
    )
    sequence_length: int = setting(
        128,
        group="data",
        role=TEACHER,
        minimum=2,
        help="Text sets: tokens per example, [CLS] and [SEP] included (padded or truncated).",
    )
    vocabulary: Optional[str] = setting(
        None,
        group="data",
        role=TEACHER,
        help="Text sets: a WordPiece vocabulary file to use instead of fitting one (e.g. the "
        "vocabulary.txt beside a teacher).",
    )

    def __post_init__(self):
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ConfigError(
                "dataset", f"`dataset` must be a non-empty string, got {self.dataset!r}"
            )
        check(self)


SYNTHETIC_TRAIN_SHARE = 0.8


def to_float(x):
    """Applies the input convention: uint8 images -> float32 in [0, 1], int32 token ids
    [N, L] -> the text models' dict inputs (`tokenizers.text_inputs`), anything else -> float32.

    Args:
      x: NumPy array of any shape.
    Returns:
      float32 array of the same shape, or a dict of int32 [N, L] arrays for token ids.
    """
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    if x.dtype == np.int32:
        from tfkd.data.tokenizers import text_inputs

        return text_inputs(x)
    return x.astype(np.float32)


@dataclasses.dataclass
class DataBundle:
    """Train/validation/test arrays of one data set plus what the models need to know about it.

    Images are uint8 NHWC, vectors float32 [N, D], texts int32 token ids [N, L] (0 is
    padding; `tokenizer` made them, and `test_texts` holds the test split's raw strings, for
    exports that tokenize inside); labels int64 [N].
    """

    name: str
    train: tuple
    validation: tuple
    test: tuple
    num_classes: int
    input_shape: tuple
    superclass_of: Optional[np.ndarray] = None
    class_names: Optional[list] = None
    tokenizer: Optional[object] = None
    test_texts: Optional[np.ndarray] = None

    @property
    def is_image(self):
        return self.train[0].dtype == np.uint8

    @property
    def is_text(self):
        return self.tokenizer is not None

    @property
    def vocabulary_size(self):
        return None if self.tokenizer is None else self.tokenizer.vocabulary_size

    def stats(self, chunk_size=4096):
        """Per-channel mean and variance of the train inputs after `to_float`.

        Channels are the last axis (colour channels for images, features for vectors). Sums are
        accumulated in float64 over chunks, so a 50000-image train split never exists as floats
        all at once.

        Returns:
          (mean, variance), float32 arrays of shape [channels].
        """
        x = self.train[0]
        if len(x) == 0:
            raise ValueError(f"data set {self.name!r}: the train split is empty, no statistics")
        channels = x.shape[-1]
        total = np.zeros(channels, np.float64)
        total_squares = np.zeros(channels, np.float64)
        count = 0
        for start in range(0, len(x), chunk_size):
            chunk = to_float(x[start : start + chunk_size]).astype(np.float64)
            chunk = chunk.reshape(-1, channels)
            total += chunk.sum(axis=0)
            total_squares += np.square(chunk).sum(axis=0)
            count += chunk.shape[0]
        mean = total / count
        variance = np.maximum(total_squares / count - np.square(mean), 0.0)
        return mean.astype(np.float32), variance.astype(np.float32)


@dataclasses.dataclass
class SourceData:
    """What a source reader returns before validation splitting and limits.

    train and test are (x, y) pairs in the DataBundle conventions; num_classes None means
    max label + 1 over both splits.
    """

    train: tuple
    test: tuple
    num_classes: Optional[int] = None
    superclass_of: Optional[np.ndarray] = None
    class_names: Optional[list] = None
