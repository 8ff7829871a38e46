"""Student export: `.keras`, SavedModel and four TFLite variants, with a parity and latency report.

Formats (file names in FILE_NAMES):
  keras           the Keras model file.
  savedmodel      SavedModel with a `serve` signature (float32 inputs in [0, 1], the training
                  convention) and, for image models, `serve_uint8` (raw uint8 pixels; the cast
                  and the division by 255 are baked in, the model's own Normalization follows).
  tflite          float32 TFLite.
  tflite_fp16     float16 weights, float32 compute and I/O.
  tflite_dynamic  dynamic-range quantisation: int8 weights, float I/O.
  tflite_int8     full-integer int8, calibrated on examples of the training split only; int8 or
                  float32 input/output (`int8_io`).

Every TFLite file is converted from the SavedModel's `serve` signature: converting a Keras 3
model's concrete functions directly has produced models that output NaN. TFLite files run with
the LiteRT interpreter (`ai_edge_litert`).
"""

import dataclasses
import os
import shutil
import tempfile

import keras

from tfkd import checkpoint
from tfkd.exporting import parity as export_report
from tfkd.exporting import parity_markdown
from tfkd.exporting.formats import (  # noqa: F401 - the public names of tfkd.exporting.student
    DEFAULT_FORMATS,
    FILE_NAMES,
    FORMATS,
    INPUT_NAME,
    INT8_IO,
    OUTPUT_NAME,
    REPRESENTATIVE_SAMPLES,
    SERVE,
    SERVE_UINT8,
    TFLITE_FORMATS,
    UINT8_INPUT_NAME,
    check_formats,
    convert_tflite,
    dequantize,
    example_shape,
    has_uint8_signature,
    load_saved_model_fn,
    quantize,
    representative_dataset,
    save_keras,
    save_saved_model,
    saved_model_predict,
    tflite_converter,
    tflite_predict,
)


def _check_targets(output_dir, formats, overwrite):
    for name in formats:
        path = os.path.join(output_dir, FILE_NAMES[name])
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")


@dataclasses.dataclass(frozen=True)
class ExportSettings:
    """How `export_student` writes and measures.

    Attributes:
      verbose: show a progress bar.
      overwrite: replace files already in the output folder; otherwise an existing one is an
        error.
      int8_io: "int8" (int8 input and output tensors) or "float" (float32 I/O around an int8
        model) for tflite_int8.
      representative_samples: calibration examples for tflite_int8.
      seed: seeds the choice of calibration examples.
      measurement: how the parity report times every format (`tfkd.exporting.parity`).
    """

    verbose: bool = True
    overwrite: bool = False
    int8_io: str = "int8"
    representative_samples: int = REPRESENTATIVE_SAMPLES
    seed: int = 0
    measurement: export_report.Measurement = export_report.Measurement()


def export_student(
    student,
    output_dir,
    formats=DEFAULT_FORMATS,
    test_data=None,
    train_images=None,
    tokenizer=None,
    settings=ExportSettings(),
):
    """Writes the student in each of `formats` under `output_dir`, each file atomically.

    Args:
      student: single-input Keras classifier with a fixed example shape, taking float32 inputs
        in the `data.to_float` convention and returning logits.
      output_dir: folder for the files (created if missing).
      formats: names from FORMATS (sequence or comma string).
      test_data: optional (x, y) test split, x raw (uint8 images) or already float. With it,
        every format is measured against the Keras student and `export_report.json` and
        `export_report.md` are written (see `tfkd.exporting.parity`).
      train_images: training-split inputs [N, *shape]; required for tflite_int8, whose
        calibration examples come from here only.
      tokenizer: text students (dict inputs of token ids) only: the data's `TextTokenizer`,
        put inside the SavedModel's `serve_text` signature (`tfkd.exporting.text_signatures`).
      settings: an `ExportSettings` (progress, overwriting, tflite_int8's I/O and calibration
        examples, the report's timing).
    Returns:
      The `exports` entry of `results.json`: file names relative to `output_dir` by format,
      and, with test data, `tflite_accuracy` / `tflite_agreement` of the float32 TFLite model
      and `report` (the JSON report's file name).
    """
    verbose, overwrite, int8_io = settings.verbose, settings.overwrite, settings.int8_io
    representative_samples, seed = settings.representative_samples, settings.seed
    formats = check_formats(formats)
    if isinstance(getattr(student, "input", None), dict):
        from tfkd.exporting import text_signatures as export_text

        return export_text.export_text_student(
            student, output_dir, formats, test_data, tokenizer, verbose=verbose, overwrite=overwrite
        )
    example_shape(student, "student")
    if int8_io not in INT8_IO:
        raise ValueError(
            f"int8_io (--int8_io) must be one of {', '.join(INT8_IO)}, got {int8_io!r}"
        )
    if "tflite_int8" in formats and train_images is None:
        raise ValueError(
            "tflite_int8 needs train_images: its calibration examples come from the training split"
        )
    os.makedirs(output_dir, exist_ok=True)
    _check_targets(output_dir, formats, overwrite)
    tflite_formats = [name for name in TFLITE_FORMATS if name in formats]
    progress = keras.utils.Progbar(len(formats), verbose=int(bool(verbose)), unit_name="format")
    exports = {}
    source = os.path.join(output_dir, FILE_NAMES["savedmodel"])
    scratch = None
    if "savedmodel" not in formats and tflite_formats:
        # The SavedModel is only the conversion source here: keep it out of the export.
        scratch = tempfile.mkdtemp(prefix="tfkd-export-")
        source = os.path.join(scratch, FILE_NAMES["savedmodel"])
    try:
        if "keras" in formats:
            save_keras(student, os.path.join(output_dir, FILE_NAMES["keras"]))
            exports["keras"] = FILE_NAMES["keras"]
            progress.add(1)
            checkpoint.fault_point("export")
        if "savedmodel" in formats or tflite_formats:
            save_saved_model(student, source)
        if "savedmodel" in formats:
            exports["savedmodel"] = FILE_NAMES["savedmodel"]
            progress.add(1)
        for name in tflite_formats:
            representative = None
            if name == "tflite_int8":
                representative = representative_dataset(train_images, representative_samples, seed)
            convert_tflite(
                source, os.path.join(output_dir, FILE_NAMES[name]), name, representative, int8_io
            )
            exports[name] = FILE_NAMES[name]
            progress.add(1)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    if test_data is not None:
        report = export_report.build_report(
            student,
            output_dir,
            exports,
            test_data,
            verbose=verbose,
            settings={"int8_io": int8_io, "representative_samples": representative_samples}
            if "tflite_int8" in formats
            else {},
            measurement=settings.measurement,
        )
        exports["report"] = parity_markdown.write_report(report, output_dir)
        if "tflite" in report["formats"]:
            exports["tflite_accuracy"] = report["formats"]["tflite"]["accuracy"]
            exports["tflite_agreement"] = report["formats"]["tflite"]["agreement"]
    return exports
