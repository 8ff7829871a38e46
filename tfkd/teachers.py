"""Loading trained classifiers (teachers, models to calibrate or export) from disk."""
import os

import keras
import tensorflow as tf


def load_model(path, flag="--teacher"):
    """A `.keras` file or a SavedModel folder (inference only) -> `keras.Model` giving logits."""
    if os.path.isfile(path) and path.endswith((".keras", ".h5")):
        try:
            return keras.saving.load_model(path, compile=False)
        except Exception as error:  # noqa: BLE001 - any failure means "not a model"
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


def rescale_inputs(model, scale):
    """Wraps `model` so that it receives inputs * `scale` (for teachers trained on 0-255)."""
    if scale == 1.0:
        return model
    inputs = keras.Input(shape=model.input_shape[1:])
    return keras.Model(inputs, model(keras.layers.Rescaling(scale)(inputs)), name=model.name)
