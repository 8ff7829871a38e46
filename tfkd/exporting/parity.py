"""Parity and latency report of exported models against the Keras student, on the test split.

For the Keras student and every exported format it measures accuracy, argmax agreement with
the Keras student, max |logit difference| (quantised outputs dequantised first), size on disk,
the median latency of single-example calls after a warm-up, and batch throughput. The report is
written as `export_report.json`:

    {"keras": {"accuracy", ...},
     "formats": {"<format>": {"accuracy", "agreement", "max_abs_logit_diff", "size_bytes",
                              "latency_ms_median", "throughput_per_s", "input", "output", ...}},
     "goals": {...}, "settings": {...}, "versions": {...}, "test_examples": N}

and as `export_report.md` (the same numbers as tables, with each format's input dtype/shape;
`tfkd.exporting.parity_markdown`).
"""

import dataclasses
import importlib.metadata
import os
import platform
import time

import keras
import numpy as np
import tensorflow as tf

from tfkd import data
from tfkd.exporting import formats as export

GOALS = {"float32_agreement": 0.999, "int8_accuracy_drop": 0.01, "int8_size_ratio": 0.3}


class KerasRunner:
    """The Keras student behind one traced tf.function (how a TensorFlow program would call it)."""

    evaluation_batch = None  # the report's batch size

    def __init__(self, model):
        shape = export.example_shape(model)
        self._call = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec([None, *shape], tf.float32)],
        )
        self.input = {"dtype": "float32", "shape": [None, *shape]}

    def prepare(self, x):
        return tf.constant(x, tf.float32)

    def run(self, prepared):
        return self._call(prepared).numpy()


class SavedModelRunner:
    """One signature of a SavedModel."""

    evaluation_batch = None

    def __init__(self, path, signature=export.SERVE):
        self._function = tf.saved_model.load(path).signatures[signature]
        ((self._input_name, spec),) = self._function.structured_input_signature[1].items()
        self._dtype = spec.dtype
        self.input = {
            "signature": signature,
            "name": self._input_name,
            "dtype": spec.dtype.name,
            "shape": list(spec.shape),
        }

    def prepare(self, x):
        return tf.constant(x, self._dtype)

    def run(self, prepared):
        return self._function(**{self._input_name: prepared})[export.OUTPUT_NAME].numpy()


class TFLiteRunner:
    """A TFLite file in the LiteRT interpreter; one allocated interpreter per batch size.

    The accuracy pass runs one example per call, as a device does. A batch needs a resized
    input, which LiteRT's XNNPACK delegate does not take (dynamic shapes,
    tensorflow/tensorflow#42491), so batches run on slower kernels: the throughput figure
    shows that cost.
    """

    evaluation_batch = 1

    def __init__(self, path, num_threads=1):
        self._path, self._num_threads, self._interpreters = path, num_threads, {}
        interpreter = self._interpreter(1)
        self._input = interpreter.get_input_details()[0]
        self._output = interpreter.get_output_details()[0]
        self.input, self.output = describe(self._input), describe(self._output)

    def _interpreter(self, batch):
        if batch not in self._interpreters:
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(model_path=self._path, num_threads=self._num_threads)
            detail = interpreter.get_input_details()[0]
            interpreter.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
            interpreter.allocate_tensors()
            self._interpreters[batch] = interpreter
        return self._interpreters[batch]

    def prepare(self, x):
        return export.quantize(x, self._input)

    def run(self, prepared):
        interpreter = self._interpreter(len(prepared))
        interpreter.set_tensor(self._input["index"], prepared)
        interpreter.invoke()
        return export.dequantize(interpreter.get_tensor(self._output["index"]), self._output)


def describe(detail):
    """A LiteRT tensor detail -> {name, dtype, shape, [scale, zero_point]} for the report."""
    entry = {
        "name": detail["name"],
        "dtype": np.dtype(detail["dtype"]).name,
        "shape": [None, *(int(d) for d in detail["shape"][1:])],
    }
    scale, zero_point = detail["quantization"]
    if scale:
        entry.update(scale=float(scale), zero_point=int(zero_point))
    return entry


def predict(runner, x, batch_size):
    """Float inputs [N, ...] -> float32 logits [N, classes], batch by batch."""
    return np.concatenate(
        [
            runner.run(runner.prepare(x[start : start + batch_size]))
            for start in range(0, len(x), batch_size)
        ]
    )


def median_latency_ms(call, calls, warmup):
    """Median wall time of `calls` calls of `call()`, after `warmup` untimed calls, in ms."""
    for _ in range(warmup):
        call()
    times = np.empty(calls)
    for index in range(calls):
        start = time.perf_counter()
        call()
        times[index] = time.perf_counter() - start
    return float(np.median(times) * 1000.0)


def throughput_per_s(call, batch, seconds):
    """Examples per second of `call()` on a batch of `batch`: batch / median time of one call.

    One untimed call first, then timed calls for at least `seconds` of wall time and at least 5
    calls; the median keeps the figure steady when other processes share the CPU.
    """
    call()
    times, start = [], time.perf_counter()
    while len(times) < 5 or time.perf_counter() - start < seconds:
        begin = time.perf_counter()
        call()
        times.append(time.perf_counter() - begin)
    return float(batch / np.median(times))


def size_bytes(path):
    if os.path.isdir(path):
        return sum(
            os.path.getsize(os.path.join(folder, name))
            for folder, _, names in os.walk(path)
            for name in names
        )
    return os.path.getsize(path)


def compare(logits, reference_logits, labels):
    """Parity of `logits` [N, C] with the Keras student's [N, C] on labels [N]."""
    predicted = np.argmax(logits, axis=-1)
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "agreement": float(np.mean(predicted == np.argmax(reference_logits, axis=-1))),
        "max_abs_logit_diff": float(np.max(np.abs(logits - reference_logits))),
        "mean_abs_logit_diff": float(np.mean(np.abs(logits - reference_logits))),
    }


def timing(runner, x, latency_calls, batch_size, throughput_seconds):
    one, batch = runner.prepare(x[:1]), runner.prepare(x[:batch_size])
    return {
        "latency_ms_median": median_latency_ms(
            lambda: runner.run(one), latency_calls, max(10, latency_calls // 10)
        ),
        "throughput_per_s": throughput_per_s(
            lambda: runner.run(batch), len(x[:batch_size]), throughput_seconds
        ),
    }


def runner_for(name, path, num_threads):
    if name == "savedmodel":
        return SavedModelRunner(path)
    return TFLiteRunner(path, num_threads)


def versions():
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "ai_edge_litert": importlib.metadata.version("ai-edge-litert"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }


@dataclasses.dataclass(frozen=True)
class Measurement:
    """How the exports are timed.

    Attributes:
      latency_calls: timed single-example calls per format (at least 200 for a stable median).
      batch_size: batch of the Keras and SavedModel accuracy passes and of the throughput
        measurement (TFLite accuracy uses single-example calls).
      num_threads: LiteRT interpreter threads (TensorFlow paths use TensorFlow's own pools).
      throughput_seconds: minimum wall time of the throughput measurement.
    """

    latency_calls: int = 200
    batch_size: int = 256
    num_threads: int = 1
    throughput_seconds: float = 1.0


def build_report(
    student, output_dir, exports, test_data, measurement=None, verbose=True, settings=None
):
    """Measures the Keras student and every exported format in `exports` on `test_data`.

    Args:
      student: the Keras model the files were exported from.
      output_dir: folder holding the files named in `exports` (format -> relative path).
      test_data: (x, y); x raw uint8 images or float inputs. Float paths see `data.to_float(x)`;
        raw uint8 x also checks the SavedModel's `serve_uint8` signature.
      measurement: a `Measurement` (default: `Measurement()`).
      settings: extra entries for the report's `settings` (e.g. int8 I/O).
    Returns:
      The report dictionary described in the module docstring.
    """
    measurement = measurement or Measurement()
    latency_calls, batch_size = measurement.latency_calls, measurement.batch_size
    num_threads, throughput_seconds = measurement.num_threads, measurement.throughput_seconds
    if latency_calls < 1 or batch_size < 1:
        raise ValueError(
            f"latency_calls and batch_size must be >= 1, got {latency_calls} and {batch_size}"
        )
    raw_x, labels = np.asarray(test_data[0]), np.asarray(test_data[1])
    if len(raw_x) == 0:
        raise ValueError("the test split is empty: nothing to measure the exports on")
    x = data.to_float(raw_x)
    names = [name for name in export.FORMATS if name in exports and name != "keras"]
    progress = keras.utils.Progbar(len(names) + 1, verbose=int(bool(verbose)), unit_name="measured")
    keras_runner = KerasRunner(student)
    reference = predict(keras_runner, x, batch_size)
    keras_entry = {
        "accuracy": compare(reference, reference, labels)["accuracy"],
        **timing(keras_runner, x, latency_calls, batch_size, throughput_seconds),
        "input": keras_runner.input,
    }
    if "keras" in exports:
        keras_entry.update(
            file=exports["keras"], size_bytes=size_bytes(os.path.join(output_dir, exports["keras"]))
        )
    progress.add(1)
    formats = {}
    for name in names:
        path = os.path.join(output_dir, exports[name])
        runner = runner_for(name, path, num_threads)
        logits = predict(runner, x, runner.evaluation_batch or batch_size)
        entry = {
            "file": exports[name],
            **compare(logits, reference, labels),
            "size_bytes": size_bytes(path),
            **timing(runner, x, latency_calls, batch_size, throughput_seconds),
            "input": runner.input,
        }
        if name == "savedmodel":
            entry.update(savedmodel_signatures(path, raw_x, reference, labels, batch_size))
        else:
            entry["output"] = runner.output
        formats[name] = entry
        progress.add(1)
    if "tflite" in formats:
        for entry in (formats[name] for name in export.TFLITE_FORMATS if name in formats):
            entry["size_ratio"] = entry["size_bytes"] / formats["tflite"]["size_bytes"]
    return {
        "test_examples": int(len(labels)),
        "settings": {
            "latency_calls": latency_calls,
            "batch_size": batch_size,
            "num_threads": num_threads,
            **(settings or {}),
        },
        "versions": versions(),
        "keras": keras_entry,
        "formats": formats,
        "goals": goals(keras_entry, formats),
    }


def savedmodel_signatures(path, raw_x, reference, labels, batch_size):
    """The SavedModel's signatures, and the parity of `serve_uint8` on raw uint8 pixels."""
    signatures = {export.SERVE: SavedModelRunner(path).input}
    entry = {"signatures": signatures}
    if export.SERVE_UINT8 in tf.saved_model.load(path).signatures:
        runner = SavedModelRunner(path, export.SERVE_UINT8)
        signatures[export.SERVE_UINT8] = runner.input
        if raw_x.dtype == np.uint8:
            parity = compare(predict(runner, raw_x, batch_size), reference, labels)
            entry["uint8"] = parity
    return entry


def goals(keras_entry, formats):
    """The deployment goals that the measured formats allow checking."""
    result = {}
    if "tflite" in formats:
        value = formats["tflite"]["agreement"]
        result["float32_agreement"] = {
            "target": f">= {GOALS['float32_agreement']}",
            "value": value,
            "met": value >= GOALS["float32_agreement"],
        }
    if "tflite_int8" in formats:
        drop = keras_entry["accuracy"] - formats["tflite_int8"]["accuracy"]
        result["int8_accuracy_drop"] = {
            "target": f"within {GOALS['int8_accuracy_drop']} of keras",
            "value": drop,
            "met": abs(drop) <= GOALS["int8_accuracy_drop"] + 1e-12,
        }
    if "tflite_int8" in formats and "tflite" in formats:
        ratio = formats["tflite_int8"]["size_ratio"]
        result["int8_size_ratio"] = {
            "target": f"<= {GOALS['int8_size_ratio']}",
            "value": ratio,
            "met": ratio <= GOALS["int8_size_ratio"],
        }
    return result
