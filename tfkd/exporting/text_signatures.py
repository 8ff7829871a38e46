"""Text student export: `.keras`, SavedModel (on token ids, and on raw strings with the tokenizer
inside) and LiteRT on token ids, with a parity report on the test split.

SavedModel signatures:
  serve       token_ids, padding_mask, segment_ids: int32 [batch, sequence_length] -> logits.
  serve_text  texts: string [batch] -> logits; the KerasHub tokenizer (TensorFlow Text ops;
              `import tensorflow_text` before loading) and the packer are inside.
TFLite files are converted from the SavedModel's `serve` signature (as for images: converting
Keras 3 concrete functions directly has produced NaN models) and run with LiteRT's interpreter.
"""

import json
import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from tfkd.atomic import atomic_path
from tfkd.data.tokenizers import text_inputs
from tfkd.exporting import formats as export_formats
from tfkd.exporting.parity import compare, size_bytes

SERVE_TEXT = "serve_text"
TEXT_INPUT_NAME = "texts"
INPUT_NAMES = ("token_ids", "padding_mask", "segment_ids")
TEXT_FORMATS = ("keras", "savedmodel", "tflite")
REPORT_NAME, MARKDOWN_NAME = "export_report.json", "export_report.md"


def sequence_length(model):
    length = model.input["token_ids"].shape[1]
    return None if length is None else int(length)


def save_text_saved_model(model, path, tokenizer=None):
    """SavedModel with `serve` on token ids (fixed length when the model fixes it) and, given a
    `tfkd.data.tokenizers.TextTokenizer`, `serve_text` on raw strings."""
    length = sequence_length(model) or (tokenizer.sequence_length if tokenizer else None)
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(token_ids, padding_mask, segment_ids):
        inputs = {"token_ids": token_ids, "padding_mask": padding_mask, "segment_ids": segment_ids}
        return {export_formats.OUTPUT_NAME: model(inputs, training=False)}

    archive.add_endpoint(
        export_formats.SERVE,
        serve,
        input_signature=[
            tf.TensorSpec([None, length], tf.int32, name=name) for name in INPUT_NAMES
        ],
    )
    if tokenizer is not None:
        text_tokenizer, packer = tokenizer.keras_tokenizer(), tokenizer.packer()
        packer(text_tokenizer(tf.constant(["a"])))  # builds both, as tracking requires
        archive.track(text_tokenizer)
        archive.track(packer)

        def serve_text(texts):
            token_ids = tf.cast(packer(text_tokenizer(texts)), tf.int32)
            return serve(
                token_ids, tf.cast(tf.not_equal(token_ids, 0), tf.int32), tf.zeros_like(token_ids)
            )

        archive.add_endpoint(
            SERVE_TEXT,
            serve_text,
            input_signature=[tf.TensorSpec([None], tf.string, name=TEXT_INPUT_NAME)],
        )
    with atomic_path(path) as temporary:
        archive.write_out(temporary, verbose=False)


def saved_model_predict(path, token_ids, batch_size=256):
    serve = tf.saved_model.load(path).signatures[export_formats.SERVE]
    outputs = []
    for start in range(0, len(token_ids), batch_size):
        inputs = text_inputs(token_ids[start : start + batch_size])
        result = serve(**{name: tf.constant(value) for name, value in inputs.items()})
        outputs.append(result[export_formats.OUTPUT_NAME].numpy())
    return np.concatenate(outputs)


def saved_model_predict_text(path, texts, batch_size=256):
    import tensorflow_text  # noqa: F401 - registers the tokenizer's ops before loading

    serve = tf.saved_model.load(path).signatures[SERVE_TEXT]
    return np.concatenate(
        [
            serve(texts=tf.constant([str(text) for text in texts[start : start + batch_size]]))[
                export_formats.OUTPUT_NAME
            ].numpy()
            for start in range(0, len(texts), batch_size)
        ]
    )


def tflite_predict(path, token_ids, num_threads=1):
    """Runs a token-id TFLite model with LiteRT one example at a time -> float32 logits."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=num_threads)
    runner = interpreter.get_signature_runner(export_formats.SERVE)
    outputs = []
    for index in range(len(token_ids)):
        inputs = text_inputs(token_ids[index : index + 1])
        outputs.append(runner(**inputs)[export_formats.OUTPUT_NAME])
    return np.concatenate(outputs).astype(np.float32)


def convert_tflite(saved_model_dir, path):
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=[export_formats.SERVE]
    )
    flatbuffer = converter.convert()
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(flatbuffer)


def build_report(student, output_dir, exports, test_data, texts=None, batch_size=256):
    """Accuracy, agreement with the Keras student and max |logit difference| per format on the
    test split (token ids), and of `serve_text` on the test texts when given."""
    token_ids, labels = np.asarray(test_data[0], np.int32), np.asarray(test_data[1])
    if len(token_ids) == 0:
        raise ValueError("the test split is empty: nothing to measure the exports on")
    reference = np.asarray(
        student.predict(text_inputs(token_ids), batch_size=batch_size, verbose=0), np.float32
    )
    formats = {}
    if "savedmodel" in exports:
        path = os.path.join(output_dir, exports["savedmodel"])
        formats["savedmodel"] = {
            "file": exports["savedmodel"],
            "size_bytes": size_bytes(path),
            **compare(saved_model_predict(path, token_ids, batch_size), reference, labels),
        }
        if texts is not None and SERVE_TEXT in tf.saved_model.load(path).signatures:
            formats["savedmodel"]["serve_text"] = compare(
                saved_model_predict_text(path, texts, batch_size), reference, labels
            )
    if "tflite" in exports:
        path = os.path.join(output_dir, exports["tflite"])
        formats["tflite"] = {
            "file": exports["tflite"],
            "size_bytes": size_bytes(path),
            **compare(tflite_predict(path, token_ids), reference, labels),
        }
    return {
        "test_examples": int(len(labels)),
        "inputs": "token ids",
        "keras": {
            "accuracy": compare(reference, reference, labels)["accuracy"],
            **({"file": exports["keras"]} if "keras" in exports else {}),
        },
        "formats": formats,
    }


def to_markdown(report):
    lines = [
        "# Export parity report (text student)",
        "",
        f"{report['test_examples']} test examples, token ids as inputs; agreement and "
        "logit differences against the Keras student.",
        "",
        "| format | accuracy | agreement | max abs logit diff |",
        "|---|---:|---:|---:|",
        f"| keras | {report['keras']['accuracy']:.4f} | 1.0000 | 0 |",
    ]
    for name, entry in report["formats"].items():
        lines.append(
            f"| {name} | {entry['accuracy']:.4f} | {entry['agreement']:.4f} | "
            f"{entry['max_abs_logit_diff']:.3g} |"
        )
        if "serve_text" in entry:
            parity = entry["serve_text"]
            lines.append(
                f"| {name} `serve_text` (raw strings) | {parity['accuracy']:.4f} | "
                f"{parity['agreement']:.4f} | {parity['max_abs_logit_diff']:.3g} |"
            )
    return "\n".join(lines) + "\n"


def export_text_student(
    student,
    output_dir,
    formats=export_formats.DEFAULT_FORMATS,
    test_data=None,
    tokenizer=None,
    texts=None,
    verbose=True,
    overwrite=False,
):
    """Writes a text student as .keras, SavedModel and/or LiteRT (float32, on token ids).

    Args:
      student: a Keras model on the dict inputs token_ids / padding_mask / segment_ids.
      formats: names from TEXT_FORMATS (the quantised TFLite variants are image-only).
      test_data: optional (token ids int32 [N, L], labels [N]); with it export_report.json and
        export_report.md measure every format against the Keras student.
      tokenizer: the `TextTokenizer` of the data, for the SavedModel's `serve_text`.
      texts: optional raw test texts [N] (aligned with test_data) to measure `serve_text`.
    Returns:
      {format: file name relative to output_dir, "report": the JSON report's name}.
    """
    formats = export_formats.check_formats(formats)
    unsupported = [name for name in formats if name not in TEXT_FORMATS]
    if unsupported:
        raise ValueError(
            f"--export: {', '.join(unsupported)} not available for text models; "
            f"use {', '.join(TEXT_FORMATS)}"
        )
    os.makedirs(output_dir, exist_ok=True)
    names = export_formats.FILE_NAMES
    for name in formats:
        if os.path.exists(os.path.join(output_dir, names[name])) and not overwrite:
            raise FileExistsError(
                f"{os.path.join(output_dir, names[name])} exists; pass "
                "overwrite=True (--overwrite) to replace it"
            )
    exports, scratch = {}, None
    source = os.path.join(output_dir, names["savedmodel"])
    if "savedmodel" not in formats and "tflite" in formats:
        scratch = tempfile.mkdtemp(prefix="tfkd-export-")
        source = os.path.join(scratch, names["savedmodel"])
    try:
        if "keras" in formats:
            export_formats.save_keras(student, os.path.join(output_dir, names["keras"]))
            exports["keras"] = names["keras"]
        if "savedmodel" in formats or "tflite" in formats:
            save_text_saved_model(student, source, tokenizer)
        if "savedmodel" in formats:
            exports["savedmodel"] = names["savedmodel"]
        if "tflite" in formats:
            convert_tflite(source, os.path.join(output_dir, names["tflite"]))
            exports["tflite"] = names["tflite"]
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    if test_data is not None:
        report = build_report(student, output_dir, exports, test_data, texts)
        with atomic_path(os.path.join(output_dir, REPORT_NAME)) as temporary:
            with open(temporary, "w") as handle:
                handle.write(json.dumps(report, indent=2) + "\n")
        with atomic_path(os.path.join(output_dir, MARKDOWN_NAME)) as temporary:
            with open(temporary, "w") as handle:
                handle.write(to_markdown(report))
        exports["report"] = REPORT_NAME
        if "tflite" in report["formats"]:
            exports["tflite_accuracy"] = report["formats"]["tflite"]["accuracy"]
            exports["tflite_agreement"] = report["formats"]["tflite"]["agreement"]
        if verbose:
            print(to_markdown(report), flush=True)
    return exports
