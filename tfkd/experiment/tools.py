"""A trained model's calibration, its deployable files and what a teacher knows, from Python.

    calibrate(model, data_config, ...)       T* and calibration before/after; the calibrated model
    export_model(model, data_config, ...)    SavedModel / TFLite files and their parity report
    analyze(teacher, data_config, ...)       class relationships and gradient rescaling plots

Each takes plain arguments (model paths, a `DataConfig`), writes its files and returns the
dictionary it also writes as JSON. A bad argument raises one ValueError (FileExistsError for an
occupied output folder) whose message starts with the argument's name; `bin/calibrate`,
`bin/export` and `bin/analyze` call these with the flags of the same names.
"""

import contextlib
import json
import os
import shutil
import time

import numpy as np

from tfkd import analysis, calibration, data, models
from tfkd.atomic import replace, write_text
from tfkd.data.superclass import superclass_map
from tfkd.experiment import teacher_calibration
from tfkd.exporting import student as export
from tfkd.exporting.parity import Measurement
from tfkd.models.introspection import classifier_weights
from tfkd.teacher import loading

EXPORT_FORMATS = ("savedmodel", "tflite", "tflite_fp16", "tflite_dynamic", "tflite_int8")
ANALYSIS_SPLITS = ("train", "validation", "test")
PREDICT_BATCH_SIZE = 256


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
    bundle = data.load(data_config)
    if not len(bundle.validation[1]):
        raise ValueError(
            "validation_fraction must be > 0: T* is fitted on the validation split, which is empty"
        )
    classifier = loading.rescale_inputs(loading.load_model(model, "model"), model_input_scale)
    _check_calibrated_model(classifier, bundle, data_config.dataset)
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
    if save:
        calibrated = calibration.calibrate_model(classifier, summary["temperature"])
        if save.endswith(".keras"):
            export.save_keras(calibrated, save)
        else:
            export.save_saved_model(calibrated, save)
        summary["saved"] = save
    write_text(os.path.join(report_dir, "calibration.json"), json.dumps(summary, indent=2))
    return summary


def _check_calibrated_model(model, bundle, dataset):
    inputs, outputs = tuple(model.input_shape[1:]), tuple(model.output_shape)
    if inputs != tuple(bundle.input_shape):
        raise ValueError(
            f"model takes inputs of shape {inputs} but dataset {dataset} has "
            f"inputs of shape {tuple(bundle.input_shape)}"
        )
    if outputs[-1] != bundle.num_classes:
        raise ValueError(
            f"model gives {outputs[-1]} outputs (shape {outputs}) but dataset "
            f"{dataset} has {bundle.num_classes} classes"
        )


def export_model(
    model,
    data_config,
    output_dir,
    formats=EXPORT_FORMATS,
    int8_io="int8",
    representative_samples=export.REPRESENTATIVE_SAMPLES,
    latency_calls=200,
    throughput_batch_size=256,
    num_threads=1,
    overwrite=False,
    verbose=True,
):
    """Exports the `.keras` classifier at path `model` into `output_dir` and measures every
    format against it on the test split (`tfkd.exporting.student.export_student`).

    Args:
      model: a .keras file whose input shape [batch, ...example] is fixed and fits the data.
      data_config: the `DataConfig` of the data set: tflite_int8 calibrates on its training
        split only (seeded by its seed), parity and accuracy are measured on its test split.
      output_dir: the folder written; it appears only when the export succeeds.
      formats: names from `tfkd.exporting.student.FORMATS`, in the order written.
      int8_io: tflite_int8 input/output tensors, one of `tfkd.exporting.student.INT8_IO`.
      representative_samples, latency_calls, throughput_batch_size, num_threads: integers >= 1
        (int8 calibration examples, timed single-example calls, batch size of the accuracy and
        throughput pass, LiteRT interpreter threads).
      overwrite: replace a non-empty `output_dir`.
      verbose: progress bars.

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
    for name, value in (
        ("representative_samples", representative_samples),
        ("latency_calls", latency_calls),
        ("throughput_batch_size", throughput_batch_size),
        ("num_threads", num_threads),
    ):
        if value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value}")
    check_output_dir(output_dir, overwrite)
    classifier = loading.load_model(model, "model")
    shape = export.example_shape(classifier, f"model {model}")
    bundle = data.load(data_config)
    if shape != tuple(bundle.input_shape):
        raise ValueError(
            f"model {model} takes examples of shape {shape} but dataset "
            f"{data_config.dataset} has examples of shape {bundle.input_shape}"
        )
    if classifier.output_shape[-1] != bundle.num_classes:
        raise ValueError(
            f"model {model} outputs {classifier.output_shape[-1]} logits but "
            f"dataset {data_config.dataset} has {bundle.num_classes} classes"
        )
    with staging_dir(output_dir) as work_dir:
        exports = export.export_student(
            classifier,
            work_dir,
            formats,
            test_data=bundle.test,
            train_images=bundle.train[0],
            settings=export.ExportSettings(
                verbose=bool(verbose),
                int8_io=int8_io,
                representative_samples=representative_samples,
                seed=data_config.seed,
                measurement=Measurement(
                    latency_calls=latency_calls,
                    batch_size=throughput_batch_size,
                    num_threads=num_threads,
                ),
            ),
        )
        with open(os.path.join(work_dir, exports["report"])) as handle:
            report = json.load(handle)
    return report


def analyze(
    teacher,
    data_config,
    output_dir,
    student_model=None,
    analysis_temperatures=(1.0, 4.0),
    analysis_split="train",
    analysis_examples=5000,
    temperature=4.0,
    alpha=0.9,
    superclass_map=None,
    classifier_layer="classifier",
    overwrite=False,
    verbose=0,
):
    """What a trained teacher knows (Tang et al. 2020, Figs. 1 and 2), written to `output_dir`:

      class_relationships.png  Pearson correlation between classes of the teacher's
                               distributions at each of `analysis_temperatures`, classes ordered
                               by super-class, beside the cosine similarity of the classifier
                               weights (layer `classifier_layer`).
      gradient_rescaling.png   w_i = |d L_KD / d z| / |d CE / d z| of the student's logits
                               against the teacher's p_t, at `temperature` and `alpha` (only
                               with `student_model`).
      analysis.json            the numbers behind both (the returned dictionary).

    Args:
      teacher: a .keras file or SavedModel folder.
      data_config: the `DataConfig` of the data set.
      output_dir: the folder written; it appears only when the analysis succeeds.
      student_model: a trained student (.keras / SavedModel) or an architecture name (analysed
        at initialisation, seeded by the data seed); None skips the gradient plot.
      analysis_temperatures: numbers > 0.
      analysis_split: one of ANALYSIS_SPLITS.
      analysis_examples: random examples of the split analysed (0 = all).
      superclass_map: a JSON file of the super-class of each class; None uses the data set's
        own, if it has one.
      verbose: 1 shows prediction progress bars.
    """
    if not teacher or not os.path.exists(teacher):
        raise ValueError(
            f"teacher must name a trained teacher (.keras file or SavedModel "
            f"folder), got {teacher!r}"
        )
    if not output_dir:
        raise ValueError("output_dir is required")
    if analysis_split not in ANALYSIS_SPLITS:
        raise ValueError(
            f"analysis_split must be one of {', '.join(ANALYSIS_SPLITS)}, got {analysis_split!r}"
        )
    if analysis_examples < 0:
        raise ValueError(f"analysis_examples must be >= 0, got {analysis_examples}")
    if not 0.0 <= alpha <= 1.0 or temperature <= 0:
        raise ValueError(
            f"alpha must be in [0, 1] and temperature > 0, got alpha={alpha}, "
            f"temperature={temperature}"
        )
    temperatures = _temperatures(analysis_temperatures)
    check_output_dir(output_dir, overwrite)
    bundle = data.load(data_config)
    teacher_model = loading.load_model(teacher, "teacher")
    x, y = _examples(bundle, analysis_split, analysis_examples, data_config.seed)
    verbose = 1 if verbose == 1 else 0
    teacher_logits = teacher_model.predict(x, batch_size=PREDICT_BATCH_SIZE, verbose=verbose)
    results = {
        "teacher": teacher,
        "dataset": data_config.dataset,
        "split": analysis_split,
        "examples": int(len(y)),
        "teacher_accuracy": float(np.mean(teacher_logits.argmax(-1) == y)),
    }
    with staging_dir(output_dir) as work_dir:
        results["class_relationships"] = _class_relationships(
            teacher_model,
            teacher_logits,
            bundle,
            temperatures,
            superclass_map,
            classifier_layer,
            os.path.join(work_dir, "class_relationships.png"),
        )
        if student_model:
            student, name = _student(student_model, bundle, data_config.seed)
            student_logits = student.predict(x, batch_size=PREDICT_BATCH_SIZE, verbose=verbose)
            weights, p_true = analysis.gradient_rescaling(
                student_logits, teacher_logits, y, temperature, alpha
            )
            analysis.plot_gradient_rescaling(
                weights,
                p_true,
                os.path.join(work_dir, "gradient_rescaling.png"),
                title=f"T = {temperature:g}, alpha = {alpha:g}:",
            )
            results["gradient_rescaling"] = {
                "student": name,
                "temperature": temperature,
                "alpha": alpha,
                "pearson_w_pt": analysis.pearson(weights, p_true),
                "spearman_w_pt": analysis.spearman(weights, p_true),
                "w_mean": float(weights.mean()),
                "w_median": float(np.median(weights)),
            }
        write_text(os.path.join(work_dir, "analysis.json"), json.dumps(results, indent=2))
    return results


def _temperatures(values):
    try:
        temperatures = [float(value) for value in values]
    except (TypeError, ValueError):
        raise ValueError(
            f"analysis_temperatures must be numbers > 0, got {','.join(map(str, values))}"
        ) from None
    if not temperatures or min(temperatures) <= 0:
        raise ValueError(
            f"analysis_temperatures must be numbers > 0, got {','.join(map(str, values))}"
        )
    return temperatures


def _examples(bundle, split, count, seed):
    x, y = getattr(bundle, split)
    if len(y) < 2:
        raise ValueError(f"analysis_split {split} has {len(y)} examples; need at least 2")
    if count and count < len(y):
        chosen = np.sort(np.random.default_rng(seed).choice(len(y), count, replace=False))
        x, y = x[chosen], y[chosen]
    return data.to_float(x), np.asarray(y)


def _student(spec, bundle, seed):
    if os.path.exists(spec):
        return loading.load_model(spec, "student_model"), spec
    if spec not in models.MODELS:
        raise ValueError(
            f"student_model: {spec!r} is neither a model file or SavedModel "
            f"folder nor a known architecture; known: {', '.join(models.names())}"
        )
    mean, variance = bundle.stats()
    return models.build(
        spec, bundle.input_shape, bundle.num_classes, mean, variance, seed=seed
    ), f"{spec} (initialisation)"


def _superclasses(bundle, path):
    """The super-class of each class, or None when no map is given and the data has none."""
    try:
        return superclass_map(bundle, path, bundle.num_classes)
    except ValueError:
        if path:
            raise
        return None


def _class_relationships(
    teacher, teacher_logits, bundle, temperatures, superclass_map, classifier_layer, plot_path
):
    superclass_of = _superclasses(bundle, superclass_map)
    correlations = {
        t: analysis.class_correlation(analysis.softmax(teacher_logits, t)) for t in temperatures
    }
    try:
        cosine = analysis.classifier_cosine(classifier_weights(teacher, classifier_layer))
    except ValueError as error:  # a SavedModel teacher exposes no weights: plot the rest
        print(f"no classifier-weight heatmap: {error}")
        cosine = None
    analysis.plot_class_relationships(
        correlations, cosine, superclass_of, plot_path, title=f"{bundle.name}"
    )
    summary = {
        "superclass_of": None if superclass_of is None else superclass_of.tolist(),
        "correlation": {f"{t:g}": {} for t in temperatures},
    }
    for t, matrix in correlations.items():
        entry = summary["correlation"][f"{t:g}"]
        if cosine is not None:
            entry["pearson_with_cosine"] = analysis.off_diagonal_pearson(matrix, cosine)
        if superclass_of is not None:
            entry["block_contrast"] = analysis.block_contrast(matrix, superclass_of)
    if cosine is not None and superclass_of is not None:
        summary["cosine_block_contrast"] = analysis.block_contrast(cosine, superclass_of)
    return summary


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
