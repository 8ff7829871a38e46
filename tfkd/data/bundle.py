"""Plain data types of the data package: the config, the loaded bundle and the input convention."""
import dataclasses
from typing import Optional

import numpy as np


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
    dataset: str
    data_dir: Optional[str] = None
    validation_fraction: float = 0.1
    train_limit: Optional[int] = None
    test_limit: Optional[int] = None
    seed: int = 0
    synthetic_size: int = 20000
    synthetic_dim: int = 100
    synthetic_classes: int = 20
    synthetic_superclasses: int = 4
    class_similarity: float = 0.5
    difficulty: int = 4
    text_column: str = "text"
    label_column: str = "label"
    tokenizer: str = "wordpiece"
    vocabulary_size: int = 8000
    sequence_length: int = 128
    vocabulary: Optional[str] = None

    def __post_init__(self):
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ValueError(f"dataset must be a non-empty string, got {self.dataset!r}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        for name in ("train_limit", "test_limit"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be None or >= 0, got {value}")
        if self.sequence_length < 2:
            raise ValueError(f"--sequence_length must be an integer >= 2 (room for [CLS] and "
                             f"[SEP]), got {self.sequence_length}")


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
    padding; `tokenizer` made them); labels int64 [N].
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
            chunk = to_float(x[start:start + chunk_size]).astype(np.float64)
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
