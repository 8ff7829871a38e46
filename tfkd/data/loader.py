"""`load`: reads a data set, checks its labels and cuts the validation split and limits."""

import numpy as np

from tfkd.data import splits, text, tokenizers
from tfkd.data.bundle import DataBundle
from tfkd.data.sources import read_source


def _check_inputs(name, train_x, test_x):
    if len(train_x) == 0:
        raise ValueError(f"data set {name!r}: the train split is empty")
    if train_x.shape[1:] != test_x.shape[1:] or train_x.dtype != test_x.dtype:
        raise ValueError(
            f"data set {name!r}: train inputs are {train_x.dtype} "
            f"{train_x.shape[1:]} but test inputs are {test_x.dtype} "
            f"{test_x.shape[1:]}"
        )


def load(config):
    """Loads the data set described by a DataConfig.

    The validation split is a stratified `validation_fraction` of the source's train split;
    `train_limit` then subsamples what remains of train (the validation set keeps its size)
    and `test_limit` subsamples test, both stratified. Every choice is seeded by config.seed.

    Returns:
      DataBundle with uint8 NHWC images or float32 [N, D] vectors and int64 labels.
    Raises:
      ValueError for an unknown data set string or a label outside [0, num_classes);
      DataUnavailableError when a tensorflow-datasets data set is missing and cannot be fetched.
    """
    name = config.dataset
    source = read_source(config)
    (train_x, train_y), (test_x, test_y) = source.train, source.test
    _check_inputs(name, train_x, test_x)
    num_classes = source.num_classes
    if num_classes is None:
        num_classes = int(max(np.max(train_y), np.max(test_y, initial=0))) + 1
    train_y = splits.check_labels(train_y, num_classes, name)
    test_y = splits.check_labels(test_y, num_classes, name)
    validation_seed, train_seed, test_seed = np.random.SeedSequence(config.seed).spawn(3)
    train, validation = splits.split_validation(
        train_x, train_y, config.validation_fraction, validation_seed
    )
    train = splits.limit(*train, config.train_limit, train_seed)
    test = splits.limit(test_x, test_y, config.test_limit, test_seed)
    tokenizer, test_texts = None, None
    if text.is_text(train_x):
        # The vocabulary sees the training texts only: validation and test words it never
        # met are out of vocabulary, as they would be for new text.
        tokenizer = tokenizers.make_tokenizer(
            config.tokenizer,
            config.sequence_length,
            train[0],
            config.vocabulary_size,
            config.vocabulary,
        )
        test_texts = test[0]
        train, validation, test = ((tokenizer.encode(x), y) for x, y in (train, validation, test))
    return DataBundle(
        name=name,
        train=train,
        validation=validation,
        test=test,
        num_classes=num_classes,
        input_shape=tuple(train[0].shape[1:]),
        superclass_of=source.superclass_of,
        class_names=source.class_names,
        tokenizer=tokenizer,
        test_texts=test_texts,
    )
