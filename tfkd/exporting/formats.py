"""Student export formats: writing `.keras`, SavedModel and TFLite files, and running them.

The lower layer of `tfkd.exporting.student`: `tfkd.exporting.parity` measures with these functions and
`tfkd.exporting.student.export_student` writes every format and the report, so neither imports the other's
importer. Formats, file names and the SavedModel / TFLite conventions are described in
`tfkd.exporting.student`.
"""

import keras
import numpy as np
import tensorflow as tf

from tfkd import data
from tfkd.atomic import atomic_path

FORMATS = ("keras", "savedmodel", "tflite", "tflite_fp16", "tflite_dynamic", "tflite_int8")
DEFAULT_FORMATS = ("keras", "savedmodel", "tflite")
FILE_NAMES = {
    "keras": "student.keras",
    "savedmodel": "saved_model",
    "tflite": "student.tflite",
    "tflite_fp16": "student_fp16.tflite",
    "tflite_dynamic": "student_dynamic.tflite",
    "tflite_int8": "student_int8.tflite",
}
TFLITE_FORMATS = ("tflite", "tflite_fp16", "tflite_dynamic", "tflite_int8")
INT8_IO = ("int8", "float")
SERVE, SERVE_UINT8 = "serve", "serve_uint8"
INPUT_NAME, UINT8_INPUT_NAME, OUTPUT_NAME = "inputs", "images", "logits"
REPRESENTATIVE_SAMPLES = 500


def check_formats(formats, flag="--export"):
    """A comma string or sequence of format names -> tuple in the given order, checked."""
    if isinstance(formats, str):
        formats = [name.strip() for name in formats.split(",") if name.strip()]
    formats = tuple(formats)
    unknown = [name for name in formats if name not in FORMATS]
    if unknown:
        raise ValueError(
            f"{flag}: unknown format(s) {', '.join(unknown)}; known: {', '.join(FORMATS)}"
        )
    if len(set(formats)) != len(formats):
        raise ValueError(f"{flag}: a format is listed twice in {', '.join(formats)}")
    return formats


def example_shape(model, argument="model"):
    """The shape of one input example of a single-input model, every dimension known."""
    if len(model.inputs) != 1:
        raise ValueError(
            f"{argument}: export needs a model with one input; this one has {len(model.inputs)}"
        )
    shape = tuple(model.inputs[0].shape[1:])
    if not shape or any(dimension is None for dimension in shape):
        raise ValueError(
            f"{argument}: the input shape {tuple(model.inputs[0].shape)} is not "
            "fixed; export needs every dimension but the batch known, "
            "e.g. (None, 28, 28, 1)"
        )
    return shape


def has_uint8_signature(model):
    """Image models ([height, width, channels] examples) get the raw-pixel signature."""
    return len(example_shape(model)) == 3


def save_keras(model, path):
    with atomic_path(path, suffix=".keras") as temporary:  # Keras saves only to *.keras
        model.save(temporary)


def save_saved_model(model, path, uint8_signature=None):
    """SavedModel with `serve` (float32 [batch, *shape] in [0, 1] -> {"logits"}) and, when
    `uint8_signature` (default: image models), `serve_uint8` (uint8 pixels -> {"logits"})."""
    shape = example_shape(model)
    if uint8_signature is None:
        uint8_signature = has_uint8_signature(model)

    def serve(inputs):
        return {OUTPUT_NAME: model(inputs, training=False)}

    def serve_uint8(images):
        # Exactly the training input convention (`data.to_float`): x / 255 in float32.
        return serve(tf.cast(images, tf.float32) / 255.0)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        SERVE, serve, input_signature=[tf.TensorSpec([None, *shape], tf.float32, name=INPUT_NAME)]
    )
    if uint8_signature:
        archive.add_endpoint(
            SERVE_UINT8,
            serve_uint8,
            input_signature=[tf.TensorSpec([None, *shape], tf.uint8, name=UINT8_INPUT_NAME)],
        )
    with atomic_path(path) as temporary:
        archive.write_out(temporary, verbose=False)


def representative_dataset(train_images, samples=REPRESENTATIVE_SAMPLES, seed=0):
    """Calibration data for full-integer quantisation, drawn from the training split only.

    Args:
      train_images: training inputs [N, *shape] (uint8 images or float vectors).
      samples: how many distinct examples to use (all N when fewer).
      seed: seeds the choice of examples.
    Returns:
      A callable returning a generator of [float32 [1, *shape]] in the model's input convention
      (`data.to_float`), as `TFLiteConverter.representative_dataset` wants.
    """
    if samples < 1:
        raise ValueError(f"representative samples must be >= 1, got {samples}")
    if len(train_images) == 0:
        raise ValueError("representative data: the training split is empty")
    chosen = np.random.default_rng(seed).choice(
        len(train_images), min(samples, len(train_images)), replace=False
    )

    def generate():
        for index in np.sort(chosen):
            yield [data.to_float(train_images[index : index + 1])]

    return generate


def tflite_converter(saved_model_dir, format_name, representative=None, int8_io="int8"):
    """A TFLiteConverter on the SavedModel's `serve` signature, set up for `format_name`."""
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[SERVE])
    if format_name == "tflite":
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if format_name == "tflite_fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif format_name == "tflite_int8":
        if representative is None:
            raise ValueError("tflite_int8 needs representative data from the training split")
        if int8_io not in INT8_IO:
            raise ValueError(f"int8_io must be one of {', '.join(INT8_IO)}, got {int8_io!r}")
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io == "int8":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    elif format_name != "tflite_dynamic":
        raise ValueError(
            f"{format_name!r} is not a TFLite format; known: {', '.join(TFLITE_FORMATS)}"
        )
    return converter


def convert_tflite(
    saved_model_dir, path, format_name="tflite", representative=None, int8_io="int8"
):
    """Converts the SavedModel's `serve` signature to a TFLite file at `path`."""
    flatbuffer = tflite_converter(saved_model_dir, format_name, representative, int8_io).convert()
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(flatbuffer)


def load_saved_model_fn(path, signature=SERVE):
    """A signature of a SavedModel: batch -> {"logits": ...}."""
    return tf.saved_model.load(path).signatures[signature]


def saved_model_predict(path, x, batch_size=256, signature=SERVE):
    serve = load_saved_model_fn(path, signature)
    outputs = []
    for start in range(0, len(x), batch_size):
        result = serve(tf.constant(x[start : start + batch_size]))
        outputs.append(next(iter(result.values())).numpy())
    return np.concatenate(outputs)


def quantize(x, detail):
    """Float inputs -> the interpreter input's dtype, using its (scale, zero point) if quantised."""
    scale, zero_point = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    if scale == 0 or not np.issubdtype(dtype, np.integer):
        return np.asarray(x, dtype=dtype)
    limits = np.iinfo(dtype)
    return np.clip(
        np.round(np.asarray(x, np.float32) / scale) + zero_point, limits.min, limits.max
    ).astype(dtype)


def dequantize(values, detail):
    """Interpreter outputs -> float32, undoing (scale, zero point) if quantised."""
    scale, zero_point = detail["quantization"]
    if scale == 0 or not np.issubdtype(np.dtype(detail["dtype"]), np.integer):
        return np.asarray(values, np.float32)
    return (np.asarray(values, np.float32) - zero_point) * np.float32(scale)


def tflite_predict(path, x, batch_size=256, num_threads=None):
    """Runs a TFLite model with the LiteRT interpreter over float `x` in batches -> float logits.

    Quantised (int8) inputs and outputs are converted with the tensors' own scales.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=num_threads)
    input_detail = interpreter.get_input_details()[0]
    output_detail = interpreter.get_output_details()[0]
    outputs, allocated = [], None
    for start in range(0, len(x), batch_size):
        batch = quantize(x[start : start + batch_size], input_detail)
        if allocated != len(batch):
            interpreter.resize_tensor_input(input_detail["index"], [len(batch), *batch.shape[1:]])
            interpreter.allocate_tensors()
            allocated = len(batch)
        interpreter.set_tensor(input_detail["index"], batch)
        interpreter.invoke()
        outputs.append(dequantize(interpreter.get_tensor(output_detail["index"]), output_detail))
    return np.concatenate(outputs)
