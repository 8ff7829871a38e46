"""Loading trained classifiers (teachers, models to calibrate or export) from disk, and the
shapes any Keras classifier (functional, Sequential or subclassed) can report."""
import os

import keras
import numpy as np
import tensorflow as tf


def load_model(path, flag="--teacher"):
    """A `.keras` file or a SavedModel folder (inference only) -> `keras.Model` giving logits.

    `.keras` and `.h5` files load with `safe_mode=True`: a file whose deserialization would run
    code stored in it (a Lambda layer holding a Python lambda) is refused with one line.
    """
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
            raise ValueError(f"{flag}: {path} is not a loadable Keras model "
                             f"({type(error).__name__}: {str(error).splitlines()[0][:200]})")
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "saved_model.pb")):
        return _wrap_saved_model(path, flag)
    if os.path.exists(path):
        raise ValueError(f"{flag}: {path} is not a model: expected a .keras file or a "
                         "SavedModel folder (with saved_model.pb)")
    raise ValueError(f"{flag}: {path} does not exist")


def _wrap_saved_model(path, flag):
    loaded = tf.saved_model.load(path)
    if "serve" not in loaded.signatures and "serving_default" not in loaded.signatures:
        raise ValueError(f"{flag}: SavedModel {path} has no 'serve' or 'serving_default' "
                         "signature")
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
    """Wraps `model` so that it receives inputs * `scale` (for teachers trained on 0-255)."""
    if scale == 1.0:
        return model
    input_shape = known_input_shape(model)
    if input_shape is None:  # built on its first call, like the model inside
        return keras.Sequential([keras.layers.Rescaling(scale), model], name=model.name)
    inputs = keras.Input(shape=input_shape[1:])
    return keras.Model(inputs, model(keras.layers.Rescaling(scale)(inputs)), name=model.name)
