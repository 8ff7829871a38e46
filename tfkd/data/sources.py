"""Turns a `--dataset` string into the reader that produces its train and test arrays."""

import os

from tfkd.data import files, synthetic, text, tfds_source
from tfkd.data.bundle import SYNTHETIC_TRAIN_SHARE, SourceData
from tfkd.registry import Registry

ACCEPTED_FORMS = (
    "a tensorflow-datasets name (cifar10, cifar100, mnist, fashion_mnist, "
    "imdb_reviews, ag_news_subset, glue/sst2, ...), tfds:NAME, idx:DIR, npz:DIR, "
    "folder:DIR, text:DIR, csv:FILE_OR_DIR, synthetic or text_synthetic"
)

# Readers of a `PREFIX:DIR` form, called with the directory.
DIRECTORY_READERS = Registry("data source")
DIRECTORY_READERS.register("idx", files.read_idx)
DIRECTORY_READERS.register("npz", files.read_npz)
DIRECTORY_READERS.register("folder", files.read_folder)
DIRECTORY_READERS.register("text", text.read_text_folder)


def read_synthetic(config):
    """Generates config.synthetic_size examples; the first 80% are train, the rest test."""
    x, y, _, superclass_of = synthetic.make_superclass_dataset(
        num_examples=config.synthetic_size,
        dim=config.synthetic_dim,
        num_classes=config.synthetic_classes,
        num_superclasses=config.synthetic_superclasses,
        class_similarity=config.class_similarity,
        difficulty=config.difficulty,
        seed=config.seed,
    )
    num_train = int(round(SYNTHETIC_TRAIN_SHARE * len(y)))
    return SourceData(
        train=(x[:num_train], y[:num_train]),
        test=(x[num_train:], y[num_train:]),
        num_classes=config.synthetic_classes,
        superclass_of=superclass_of,
    )


def _unknown(dataset):
    return ValueError(f"--dataset {dataset!r} is not recognised; expected {ACCEPTED_FORMS}")


def read_source(config):
    """Reads the data set named by config.dataset.

    Returns:
      SourceData with the train and test splits as read, before validation and limits.
    Raises:
      ValueError for a string matching no accepted form; DataUnavailableError when a
      tensorflow-datasets data set is neither prepared nor downloadable.
    """
    dataset = config.dataset.strip()
    if dataset == "synthetic":
        return read_synthetic(config)
    if dataset == "text_synthetic":
        return text.read_text_synthetic(config)
    prefix, separator, argument = dataset.partition(":")
    if prefix == "lm" and separator:
        raise ValueError(
            f"--dataset {dataset!r} is causal-language-model data, which "
            "`tfkd distill` distils into a causal-LM student (tfkd.lm.run); classifiers read "
            f"{ACCEPTED_FORMS}"
        )
    if prefix == "csv" and separator:
        return text.read_csv(
            os.path.expanduser(argument), config.text_column, config.label_column, config.seed
        )
    if separator and prefix in DIRECTORY_READERS:
        if not argument:
            raise ValueError(f"--dataset {dataset!r}: {prefix}:DIR needs a directory")
        return DIRECTORY_READERS.get(prefix)(os.path.expanduser(argument))
    name = argument if prefix == "tfds" and separator else dataset
    if name in text.TFDS_TEXT:
        return text.read_tfds_text(name, data_dir=config.data_dir)
    if name and tfds_source.is_tfds_name(name):
        return tfds_source.read_tfds(name, data_dir=config.data_dir)
    raise _unknown(dataset)
