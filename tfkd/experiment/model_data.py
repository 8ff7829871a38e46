"""The data set a tool (`bin/calibrate`, `bin/export`, `bin/analyze`) measures a trained model
on, checked against the model.

    bundle = load_for(model, "run/teacher.keras", data_config, "teacher")

A text model (the dict inputs token_ids / padding_mask / segment_ids) reads the data tokenized
with the vocabulary.txt beside its file (what a run writes beside teacher.keras and
student.keras) unless --vocabulary names one. Each mismatch is one ValueError whose message
starts with the argument's name (`model`, `teacher`, ...) or the data setting's
(`data_config.sequence_length`), so the command line shows the flag: a text model on images or
vectors and the other way round, another vocabulary, another sequence length, another number of
classes, another example shape.
"""

import dataclasses

from tfkd import data, models
from tfkd.data import tokenizers
from tfkd.teacher import loading


def load_for(model, spec, data_config, argument="model"):
    """`data.load(data_config)` for `model`, the model loaded from path `spec`; see the module."""
    bundle = data.load(config_for(model, spec, data_config))
    check(model, spec, bundle, argument)
    return bundle


def config_for(model, spec, data_config):
    """`data_config`, reading the vocabulary.txt beside `spec` when `model` is a text model and
    `data_config` asks for WordPiece without naming a vocabulary."""
    if (
        not models.is_text_model(model)
        or data_config.tokenizer != "wordpiece"
        or data_config.vocabulary
    ):
        return data_config
    path = loading.vocabulary_beside(spec)
    return data_config if path is None else dataclasses.replace(data_config, vocabulary=path)


def check(model, spec, bundle, argument="model"):
    """Refuses `model` (loaded from `spec`) on `bundle`, in one line naming `argument`, when it
    cannot read the examples or predicts another number of classes."""
    where = f"{argument} ({spec})"
    if models.is_text_model(model) != bundle.is_text:
        reads = "token ids" if models.is_text_model(model) else "images or vectors"
        holds = "texts (token ids)" if bundle.is_text else "images or vectors"
        raise ValueError(
            f"{argument} reads {reads} ({spec}) but dataset {bundle.name} holds {holds}"
        )
    if bundle.is_text:
        _check_text(model, spec, bundle.tokenizer, where)
    else:
        shape = tuple(model.input_shape[1:])
        if shape != tuple(bundle.input_shape):
            raise ValueError(
                f"{argument} takes examples of shape {shape} ({spec}) but dataset {bundle.name} has "
                f"examples of shape {tuple(bundle.input_shape)}"
            )
    classes = model.output_shape[-1]
    if classes != bundle.num_classes:
        raise ValueError(
            f"{argument} gives {classes} outputs ({spec}) but dataset {bundle.name} has "
            f"{bundle.num_classes} classes"
        )


def _check_text(model, spec, tokenizer, where):
    path = loading.vocabulary_beside(spec)
    size = loading.embedding_size(model)
    theirs = None
    if path is not None and tokenizer.kind == "wordpiece":
        theirs = tokenizers.TextTokenizer(
            "wordpiece",
            tokenizer.sequence_length,
            tokenizers.read_vocabulary(path, f"{where}: vocabulary"),
            path,
        )
    if (theirs is not None and theirs.vocabulary != tokenizer.vocabulary) or (
        size is not None and size != tokenizer.vocabulary_size
    ):
        trained = theirs.describe() if theirs else f"vocabulary of {size} tokens"
        hint = (
            f"; pass --vocabulary={path}" if path else "; pass the vocabulary it was trained with"
        )
        raise ValueError(
            f"{where} was trained on token ids of the {trained}, but the data is tokenized "
            f"with the {tokenizer.describe()}{hint}"
        )
    fixed, longest = models.text_classifiers.sequence_lengths(model)
    length = tokenizer.sequence_length
    if (fixed is not None and fixed != length) or (longest is not None and length > longest):
        reads = f"exactly {fixed}" if fixed is not None else f"at most {longest}"
        raise ValueError(
            f"data_config.sequence_length is {length} but {where} reads sequences of {reads} "
            f"tokens; pass --sequence_length={fixed or longest}"
        )
