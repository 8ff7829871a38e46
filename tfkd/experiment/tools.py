"""A trained model's calibration and its deployable files, from Python (what a teacher knows:
`tfkd.experiment.teacher_knowledge.analyze`).

    calibrate(model, data_config, ...)       T* and calibration before/after; the calibrated model
    export_model(model, data_config, ...)    SavedModel / TFLite files and their parity report

Each takes plain arguments (model paths, a `DataConfig`), writes its files and returns the
dictionary it also writes as JSON. A text model (KerasHub dict inputs of token ids) reads the
data tokenized with the vocabulary.txt beside its file unless the `DataConfig` names one
(`tfkd.experiment.model_data`). A bad argument raises one ValueError (FileExistsError for an
occupied output folder) whose message starts with the argument's name; `bin/calibrate` and
`bin/export` call these with the flags of the same names.
"""

import contextlib
import dataclasses
import json
import os
import shutil
import time

from tfkd import calibration, data, models
from tfkd.atomic import replace, write_text
from tfkd.data import tokenizers
from tfkd.experiment import model_data, teacher_calibration
from tfkd.exporting import student as export
from tfkd.exporting import text_signatures as export_text
from tfkd.teacher import loading

EXPORT_FORMATS = ("savedmodel", "tflite", "tflite_fp16", "tflite_dynamic", "tflite_int8")


def calibrate(
    model,
    data_config,
    model_input_scale=1.0,
    save=None,
    report_dir=None,
    calibration_bins=calibration.DEFAULT_BINS,
):
    """Fits T* of the classifier at path `model` on the validation split (minimum NLL) and
    measures the test split before and after.

    Args:
      model: a .keras file or SavedModel folder giving logits [batch, classes].
      data_config: the `DataConfig` of the data set; its validation split must not be empty.
      model_input_scale: the [0, 1] inputs are multiplied by this (255 for raw pixels).
      save: if given, the calibrated model (logits / T*) is written here: PATH.keras, or a
        SavedModel folder for any other path.
      report_dir: folder for calibration.json, reliability_before.png and
        reliability_after.png (default savedmodels/calibrate-<model>-<time>); files in it are
        replaced.
      calibration_bins: confidence bins of the ECE and the diagrams.

    Returns:
      calibration.json's dictionary: temperature, accuracy, ece/classwise_ece/nll/brier
      _before and _after, model, dataset, sizes (validation and test), report_dir, and saved.
    """
    if not model:
        raise ValueError("model is required: a .keras file or SavedModel folder")
    if calibration_bins < 1:
        raise ValueError(f"calibration_bins must be an integer >= 1, got {calibration_bins}")
    if model_input_scale <= 0:
        raise ValueError(f"model_input_scale must be a number > 0, got {model_input_scale}")
    classifier = loading.load_model(model, "model")
    if models.is_text_model(classifier) and model_input_scale != 1.0:
        raise ValueError(
            f"model_input_scale scales images; model {model} reads token ids, got "
            f"{model_input_scale}"
        )
    bundle = data.load(model_data.config_for(classifier, model, data_config))
    if not len(bundle.validation[1]):
        raise ValueError(
            "validation_fraction must be > 0: T* is fitted on the validation split, which is empty"
        )
    model_data.check(classifier, model, bundle)
    classifier = loading.rescale_inputs(classifier, model_input_scale)
    name = os.path.splitext(os.path.basename(os.path.normpath(model)))[0]
    report_dir = report_dir or os.path.join(
        "savedmodels", f"calibrate-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    if os.path.exists(report_dir) and not os.path.isdir(report_dir):
        raise FileExistsError(f"report_dir {report_dir} exists and is not a folder")
    os.makedirs(report_dir, exist_ok=True)
    summary = teacher_calibration.measure_calibration(
        classifier, bundle, report_dir, calibration_bins, name
    )
    summary.update(
        model=model,
        dataset=data_config.dataset,
        report_dir=report_dir,
        sizes={split: int(len(getattr(bundle, split)[1])) for split in ("validation", "test")},
    )
    if bundle.is_text:
        summary["tokenizer"] = bundle.tokenizer.describe()
    if save:
        _save_calibrated(
            calibration.calibrate_model(classifier, summary["temperature"]), save, bundle
        )
        summary["saved"] = save
    write_text(os.path.join(report_dir, "calibration.json"), json.dumps(summary, indent=2))
    return summary


def _save_calibrated(calibrated, save, bundle):
    """PATH.keras, or a SavedModel folder (a text model's with `serve_text`); a WordPiece text
    model's vocabulary.txt goes beside it, where a run writes it beside its models."""
    folder = os.path.dirname(os.path.abspath(save))
    if bundle.is_text and bundle.tokenizer.kind == "wordpiece":
        existing = loading.vocabulary_beside(save)
        if existing and tokenizers.read_vocabulary(existing) != bundle.tokenizer.vocabulary:
            raise FileExistsError(
                f"save: {existing} is another vocabulary than the model's "
                f"({bundle.tokenizer.describe()}); save the calibrated model in another folder"
            )
    if save.endswith(".keras"):
        export.save_keras(calibrated, save)
    elif bundle.is_text:
        export_text.save_text_saved_model(calibrated, save, bundle.tokenizer)
    else:
        export.save_saved_model(calibrated, save)
    if bundle.is_text:
        os.makedirs(folder, exist_ok=True)
        bundle.tokenizer.save(folder)


def export_model(model, data_config, output_dir, formats=EXPORT_FORMATS, settings=None):
    """Exports the `.keras` classifier at path `model` into `output_dir` and measures every
    format against it on the test split (`tfkd.exporting.student.export_student`).

    Args:
      model: a .keras file whose input shape [batch, ...example] is fixed and fits the data.
      data_config: the `DataConfig` of the data set: tflite_int8 calibrates on its training
        split only (seeded by its seed), parity and accuracy are measured on its test split.
      output_dir: the folder written; it appears only when the export succeeds.
      formats: names from `tfkd.exporting.student.FORMATS`, in the order written.
      settings: an `ExportSettings` (default: its defaults): progress bars (verbose), replacing a non-empty
        `output_dir` (overwrite), tflite_int8's input/output tensors (int8_io, one of
        `tfkd.exporting.student.INT8_IO`) and calibration examples (representative_samples),
        and the report's timing (measurement: latency_calls, batch_size, num_threads), each
        count an integer >= 1; its seed is replaced by the data's.

    Returns:
      export_report.json's dictionary.
    """
    formats = export.check_formats(formats, "formats")
    if not formats:
        raise ValueError(f"formats: give at least one of {', '.join(export.FORMATS)}")
    if not model:
        raise ValueError("model is required: the .keras file to export")
    if not output_dir:
        raise ValueError("output_dir is required: the folder to write the export to")
    settings = settings or export.ExportSettings()
    measurement = settings.measurement
    for name, value in (
        ("representative_samples", settings.representative_samples),
        ("latency_calls", measurement.latency_calls),
        ("throughput_batch_size", measurement.batch_size),
        ("num_threads", measurement.num_threads),
    ):
        if value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value}")
    check_output_dir(output_dir, settings.overwrite)
    settings = dataclasses.replace(settings, seed=data_config.seed, overwrite=False)
    classifier = loading.load_model(model, "model")
    if models.is_text_model(classifier):
        formats = _text_formats(formats)
    else:
        export.example_shape(classifier, f"model {model}")
    bundle = model_data.load_for(classifier, model, data_config)
    with staging_dir(output_dir) as work_dir:
        if bundle.is_text:  # serve_text measured on the raw test texts
            exports = export_text.export_text_student(
                classifier,
                work_dir,
                formats,
                bundle.test,
                bundle.tokenizer,
                bundle.test_texts,
                verbose=settings.verbose,
            )
            bundle.tokenizer.save(work_dir)
        else:
            exports = export.export_student(
                classifier,
                work_dir,
                formats,
                test_data=bundle.test,
                train_images=bundle.train[0],
                settings=settings,
            )
        with open(os.path.join(work_dir, exports["report"])) as handle:
            report = json.load(handle)
    return report


def _text_formats(formats):
    """The formats a text model exports to: the default list becomes the text formats in it;
    a quantised TFLite format asked for is refused."""
    if tuple(formats) == EXPORT_FORMATS:
        return tuple(name for name in formats if name in export_text.TEXT_FORMATS)
    refused = [name for name in formats if name not in export_text.TEXT_FORMATS]
    if refused:
        raise ValueError(
            f"formats: {', '.join(refused)} not available for text models; use "
            f"{', '.join(export_text.TEXT_FORMATS)}"
        )
    return tuple(formats)


def check_output_dir(path, overwrite):
    """FileExistsError unless `path` is absent, an empty folder, or `overwrite` is set."""
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise FileExistsError(
            f"output_dir {path} exists and is not empty; pass overwrite=True "
            "(--overwrite) to replace it"
        )
    if os.path.exists(path) and not os.path.isdir(path):
        raise FileExistsError(f"output_dir {path} exists and is not a folder")


@contextlib.contextmanager
def staging_dir(output_dir):
    """A sibling folder that becomes `output_dir` only when the job succeeds."""
    output_dir = os.path.abspath(output_dir)
    staging = f"{output_dir}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    try:
        yield staging
        replace(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
