"""What a trained teacher knows (Tang et al. 2020, Figs. 1 and 2), from Python:

    analyze(teacher, data_config, output_dir, ...)   class relationships and gradient rescaling

writes its plots and analysis.json and returns the dictionary it writes. A bad argument raises
one ValueError (FileExistsError for an occupied output folder) whose message starts with the
argument's name; `bin/analyze` calls it with the flags of the same names. A text teacher (KerasHub
dict inputs of token ids) reads the data tokenized with the vocabulary.txt beside its file
(`tfkd.experiment.model_data`).
"""

import dataclasses
import json
import os
from typing import Optional

import numpy as np

from tfkd import analysis, data, models
from tfkd.atomic import write_text
from tfkd.data.superclass import superclass_map
from tfkd.experiment import model_data
from tfkd.experiment.tools import check_output_dir, staging_dir
from tfkd.models.introspection import classifier_weights
from tfkd.teacher import loading

ANALYSIS_SPLITS = ("train", "validation", "test")
PREDICT_BATCH_SIZE = 256


@dataclasses.dataclass(frozen=True)
class AnalysisOptions:
    """What `analyze` measures.

    Attributes:
      analysis_temperatures: temperatures (numbers > 0) of the class-correlation heatmaps.
      analysis_split: one of ANALYSIS_SPLITS.
      analysis_examples: random examples of the split analysed (0 = all).
      temperature, alpha: the KD loss whose gradients the rescaling plot measures.
      superclass_map: a JSON file of the super-class of each class; None uses the data set's
        own, if it has one.
      classifier_layer: the teacher's final Dense layer (a KerasHub classifier's head when it
        has no layer of this name).
    """

    analysis_temperatures: tuple = (1.0, 4.0)
    analysis_split: str = "train"
    analysis_examples: int = 5000
    temperature: float = 4.0
    alpha: float = 0.9
    superclass_map: Optional[str] = None
    classifier_layer: str = "classifier"


def analyze(
    teacher, data_config, output_dir, student_model=None, options=None, overwrite=False, verbose=0
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
      options: an `AnalysisOptions` (default: its defaults).
      overwrite: replace a non-empty `output_dir`.
      verbose: 1 shows prediction progress bars.
    """
    options = options or AnalysisOptions()
    analysis_split, analysis_examples = options.analysis_split, options.analysis_examples
    temperature, alpha = options.temperature, options.alpha
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
    temperatures = _temperatures(options.analysis_temperatures)
    check_output_dir(output_dir, overwrite)
    teacher_model = loading.load_model(teacher, "teacher")
    bundle = model_data.load_for(teacher_model, teacher, data_config, "teacher")
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
            options.superclass_map,
            models.text_classifiers.classifier_layer_name(teacher_model, options.classifier_layer),
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
        student = loading.load_model(spec, "student_model")
        model_data.check(student, spec, bundle, "student_model")
        return student, spec
    known = models.TEXT_MODELS if bundle.is_text else models.MODELS
    if spec not in known:
        raise ValueError(
            f"student_model: {spec!r} is neither a model file or SavedModel "
            f"folder nor a known architecture for {bundle.name}; known: {', '.join(known.names())}"
        )
    if bundle.is_text:
        return models.build(
            spec,
            bundle.input_shape,
            bundle.num_classes,
            seed=seed,
            vocabulary_size=bundle.vocabulary_size,
        ), f"{spec} (initialisation)"
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
