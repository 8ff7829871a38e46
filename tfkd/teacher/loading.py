"""Loading trained classifiers (teachers, models to calibrate or export) from disk, the shapes
any Keras classifier (functional, Sequential or subclassed) can report, and the check that a
student and its teachers agree on the number of classes."""

import os

import keras
import numpy as np
import tensorflow as tf

PRESET = "preset:"


def load_model(path, flag="--teacher"):
    """A `.keras` file, a SavedModel folder (inference only) or `preset:DIR`, a local KerasHub
    preset folder (what `save_to_preset` writes; loaded without a preprocessor) -> `keras.Model`
    giving logits.

    `.keras` and `.h5` files load with `safe_mode=True`: a file whose deserialization would run
    code stored in it (a Lambda layer holding a Python lambda) is refused with one line.
    """
    if path.startswith(PRESET):
        return _load_preset(path[len(PRESET) :], flag)
    if os.path.isfile(path) and path.endswith((".keras", ".h5")):
        try:
            return keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as error:  # noqa: BLE001 - any failure means "not a model"
            if "safe_mode" in str(error):
                raise ValueError(
                    f"{flag}: {path} needs unsafe deserialization (a Lambda layer runs arbitrary "
                    "code); tfkd loads .keras files with safe_mode=True. Re-save it without "
                    "Lambda layers, or load it yourself with "
                    f"keras.saving.load_model({path!r}, safe_mode=False) and pass the model"
                ) from None
            raise ValueError(
                f"{flag}: {path} is not a loadable Keras model "
                f"({type(error).__name__}: {str(error).splitlines()[0][:200]})"
            )
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb")):
        return _wrap_saved_model(path, flag)
    if os.path.exists(path):
        raise ValueError(
            f"{flag}: {path} is not a model: expected a .keras file or a "
            "SavedModel folder (with saved_model.pb)"
        )
    raise ValueError(f"{flag}: {path} does not exist")


def _load_preset(directory, flag):
    if not os.path.isfile(os.path.join(directory, "config.json")):
        raise ValueError(
            f"{flag}: preset:{directory} is not a KerasHub preset folder (no "
            "config.json); write one with model.save_to_preset(DIR)"
        )
    import keras_hub

    try:
        return keras_hub.models.TextClassifier.from_preset(directory, preprocessor=None)
    except Exception as error:  # noqa: BLE001 - any failure means "not a classifier preset"
        raise ValueError(
            f"{flag}: preset:{directory} is not a KerasHub text classifier preset "
            f"({type(error).__name__}: {str(error).splitlines()[0][:200]})"
        ) from None


def vocabulary_beside(spec):
    """The WordPiece vocabulary a text model was trained with: vocabulary.txt in the folder
    of a .keras file or SavedModel, or in a preset folder (or its tokenizer assets); None."""
    path = spec[len(PRESET) :] if spec.startswith(PRESET) else spec
    folder = (
        path
        if os.path.isdir(path) and spec.startswith(PRESET)
        else os.path.dirname(os.path.normpath(path))
    )
    for candidate in (
        os.path.join(folder, "vocabulary.txt"),
        os.path.join(folder, "assets", "tokenizer", "vocabulary.txt"),
    ):
        if os.path.isfile(candidate):
            return candidate
    return None


def embedding_size(model):
    """Rows of a text model's token embedding (its vocabulary size), or None."""
    backbone = getattr(model, "backbone", None)
    if backbone is not None and hasattr(backbone, "vocabulary_size"):
        return int(backbone.vocabulary_size)
    for layer in getattr(model, "layers", ()):
        if layer.name == "token_embedding" and hasattr(layer, "input_dim"):
            return int(layer.input_dim)
    return None


def check_vocabulary(model, spec, tokenizer, flag="--teacher"):
    """Refuses, in one line naming both vocabularies, a teacher whose token ids mean other
    tokens than the student's (`tokenizer`, a `tfkd.data.tokenizers.TextTokenizer`)."""
    from tfkd.data import tokenizers

    path = vocabulary_beside(spec)
    size = embedding_size(model)
    if path is not None:
        theirs = tokenizers.read_vocabulary(path, flag)
        teacher = tokenizers.TextTokenizer("wordpiece", tokenizer.sequence_length, theirs, path)
        same = tokenizer.vocabulary == theirs
    else:
        teacher = None
        same = size is None or size == tokenizer.vocabulary_size
    if same:
        return
    described = teacher.describe() if teacher else f"a vocabulary of {size} tokens"
    hint = f"; pass --vocabulary={path}" if path else ""
    raise ValueError(
        f"{flag} {spec}: teacher and student must share the tokenizer, but the "
        f"teacher uses the {described} and the student the "
        f"{tokenizer.describe()}{hint}"
    )


def _wrap_saved_model(path, flag):
    loaded = tf.saved_model.load(path)
    if "serve" not in loaded.signatures and "serving_default" not in loaded.signatures:
        raise ValueError(f"{flag}: SavedModel {path} has no 'serve' or 'serving_default' signature")
    endpoint = "serve" if "serve" in loaded.signatures else "serving_default"
    spec = next(iter(loaded.signatures[endpoint].structured_input_signature[1].values()))
    inputs = keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype.name)
    outputs = keras.layers.TFSMLayer(path, call_endpoint=endpoint, trainable=False)(inputs)
    if isinstance(outputs, dict):
        outputs = next(iter(outputs.values()))
    return keras.Model(inputs, outputs, name=os.path.basename(os.path.normpath(path)))


def known_input_shape(model):
    """`model`'s input shape (None, ...) if it can tell, else None.

    Functional and Sequential models record it; a built subclassed model remembers the shape
    it was built with; a subclassed model never called knows nothing.
    """
    try:
        return _any_batch(model.input_shape)
    except (AttributeError, ValueError):  # subclassed, or a Sequential without an Input
        pass
    if not model.built:
        return None
    shapes = model.get_build_config() or {}
    shape = shapes.get("input_shape", next(iter(shapes.values()), None))
    if not isinstance(shape, (tuple, list)) or not shape or isinstance(shape[0], (tuple, list)):
        return None  # several inputs: not a classifier of one tensor
    # The build shape holds the batch size of the first call; any batch size will do.
    return (None, *shape[1:])


def known_output_shape(model):
    """`model`'s output shape (None, ..., classes) if it can tell, else None.

    Asks what the model records (functional, Sequential), else traces one symbolic call on
    the input shape a built subclassed model was built with (no computation), else makes one
    call on a batch of zeros; None when the model cannot tell without data.
    """
    try:
        return _any_batch(model.output_shape)
    except (AttributeError, ValueError):
        pass
    input_shape = known_input_shape(model)
    if input_shape is None:
        return None
    try:
        return _any_batch(model.compute_output_spec(keras.KerasTensor(input_shape)).shape)
    except Exception:  # noqa: BLE001 - a call() that cannot be traced symbolically
        pass
    if None in input_shape[1:]:
        return None
    try:
        outputs = model(np.zeros((1, *input_shape[1:]), "float32"), training=False)
        return _any_batch(outputs.shape)
    except Exception:  # noqa: BLE001 - the model cannot tell; the first step checks instead
        return None


def _any_batch(shape):
    """(batch, ...) -> (None, ...); None for several outputs (not a classifier of logits)."""
    shape = tuple(shape)
    if not shape or any(isinstance(size, (tuple, list)) for size in shape):
        return None
    return (None, *shape[1:])


def rescale_inputs(model, scale):
    """Wraps `model` so that it receives inputs * `scale` (for teachers trained on 0-255);
    text models (token ids) are returned as they are."""
    if scale == 1.0 or isinstance(getattr(model, "input", None), dict):
        return model
    input_shape = known_input_shape(model)
    if input_shape is None:  # built on its first call, like the model inside
        return keras.Sequential([keras.layers.Rescaling(scale), model], name=model.name)
    inputs = keras.Input(shape=input_shape[1:])
    return keras.Model(inputs, model(keras.layers.Rescaling(scale)(inputs)), name=model.name)


def num_classes(model):
    """The number of logits `model` gives, or None when it cannot tell without data."""
    shape = known_output_shape(model)
    return None if shape is None or shape[-1] is None else int(shape[-1])


def check_class_counts(student, teacher, teacher_name="teacher", student_name="student"):
    """Raises one clear error when student and teacher disagree on the number of classes.

    Either model may be functional, Sequential or subclassed; a model that cannot report its
    output shape yet (a subclassed model never called) passes here and is checked on the
    logits of the first step (`check_logits`).
    """
    _compare_shapes(
        known_output_shape(student),
        known_output_shape(teacher),
        student,
        teacher,
        teacher_name,
        student_name,
    )


def check_logits(
    student_logits, teacher_logits, student, teacher, teacher_name="teacher", student_name="student"
):
    """`check_class_counts` on the static shapes of one step's logits [..., batch, classes]."""
    _compare_shapes(
        (None, student_logits.shape[-1]),
        (None, teacher_logits.shape[-1]),
        student,
        teacher,
        teacher_name,
        student_name,
    )


def _compare_shapes(student_shape, teacher_shape, student, teacher, teacher_name, student_name):
    if (
        student_shape is None
        or teacher_shape is None
        or None in (student_shape[-1], teacher_shape[-1])
    ):
        return
    if student_shape[-1] != teacher_shape[-1]:
        raise ValueError(
            f"{student_name} and {teacher_name} disagree on the number of classes: "
            f"{student_name}{_quoted_name(student)} output shape {student_shape}, "
            f"{teacher_name}{_quoted_name(teacher)} output shape {teacher_shape}"
        )


def _quoted_name(model):
    # Precomputed teacher logits (fixed teaching) come without a model.
    return f" {model.name!r}" if model is not None else ""
