"""Student export: `.keras`, SavedModel (`serve` signature) and float32 TFLite, with parity checks.

TFLite is converted from the SavedModel: converting a Keras 3 model's concrete functions
directly has produced NaN models. Interpretation uses LiteRT (`ai_edge_litert`).
"""
import os

import keras
import numpy as np
import tensorflow as tf

from tfkd.io import atomic_path

FORMATS = ("keras", "savedmodel", "tflite")
FILE_NAMES = {"keras": "student.keras", "savedmodel": "saved_model", "tflite": "student.tflite"}


def check_formats(formats):
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"--export: unknown format(s) {', '.join(unknown)}; known: "
                         f"{', '.join(FORMATS)}")
    return tuple(formats)


def save_keras(model, path):
    with atomic_path(path) as temporary:
        model.save(temporary if temporary.endswith(".keras") else temporary + ".keras")
        if not temporary.endswith(".keras"):
            os.replace(temporary + ".keras", temporary)


def save_saved_model(model, path):
    """SavedModel with a `serve` signature taking float32 [batch, *input_shape]."""
    with atomic_path(path) as temporary:
        model.export(temporary, format="tf_saved_model", verbose=False)


def convert_tflite(saved_model_dir, path):
    """Float32 TFLite converted from a SavedModel."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    flatbuffer = converter.convert()
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(flatbuffer)


def load_saved_model_fn(path):
    """The `serve` function of a SavedModel: float32 batch -> logits."""
    return tf.saved_model.load(path).signatures["serve"]


def saved_model_predict(path, x, batch_size=256):
    serve = load_saved_model_fn(path)
    outputs = []
    for start in range(0, len(x), batch_size):
        result = serve(tf.constant(x[start:start + batch_size]))
        outputs.append(next(iter(result.values())).numpy())
    return np.concatenate(outputs)


def tflite_predict(path, x, batch_size=256):
    """Runs a TFLite model with the LiteRT interpreter over `x` in batches -> outputs."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    input_detail = interpreter.get_input_details()[0]
    output_index = interpreter.get_output_details()[0]["index"]
    outputs, allocated = [], None
    for start in range(0, len(x), batch_size):
        batch = np.asarray(x[start:start + batch_size], dtype=input_detail["dtype"])
        if allocated != len(batch):
            interpreter.resize_tensor_input(input_detail["index"], [len(batch), *batch.shape[1:]])
            interpreter.allocate_tensors()
            allocated = len(batch)
        interpreter.set_tensor(input_detail["index"], batch)
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(output_index).copy())
    return np.concatenate(outputs)


def export_student(student, output_dir, formats=FORMATS, test_data=None, verbose=True):
    """Writes the student in each of `formats` under `output_dir`.

    With `test_data=(x, y)` (x as the model takes it), also measures the TFLite model's accuracy
    and its argmax agreement with the Keras student. Returns the `exports` entry of
    `results.json`: file names relative to `output_dir`, plus the measurements.
    """
    formats = check_formats(formats)
    os.makedirs(output_dir, exist_ok=True)
    steps = [f for f in FORMATS if f in formats or (f == "savedmodel" and "tflite" in formats)]
    progress = keras.utils.Progbar(len(steps), verbose=int(bool(verbose)), unit_name="export")
    exports = {}
    for step in steps:
        path = os.path.join(output_dir, FILE_NAMES[step])
        if step == "keras":
            save_keras(student, path)
        elif step == "savedmodel":
            save_saved_model(student, path)
        else:
            convert_tflite(os.path.join(output_dir, FILE_NAMES["savedmodel"]), path)
        exports[step] = FILE_NAMES[step]
        progress.add(1)
    if "tflite" in formats and test_data is not None:
        x, y = test_data
        keras_argmax = np.argmax(student.predict(x, batch_size=256, verbose=0), axis=-1)
        tflite_argmax = np.argmax(tflite_predict(os.path.join(output_dir, exports["tflite"]), x),
                                  axis=-1)
        exports["tflite_accuracy"] = float(np.mean(tflite_argmax == np.asarray(y)))
        exports["tflite_agreement"] = float(np.mean(tflite_argmax == keras_argmax))
    return exports
