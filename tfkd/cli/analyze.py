"""`bin/analyze`: what a teacher knows (Tang et al. 2020, Figs. 1 and 2), as PNGs and JSON.

  class_relationships.png  Pearson correlation of the teacher's distributions between classes
                           at each --analysis_temperatures, classes ordered by super-class, next
                           to the cosine similarity of the teacher's classifier weights.
  gradient_rescaling.png   w_i = |d L_KD / d z| / |d CE / d z| for the student's logits against
                           the teacher's p_t (needs --student_model).
  analysis.json            the numbers behind both.
"""
import json
import os

import numpy as np
from absl import flags

from tfkd import analysis, data, models, partial, teachers
from tfkd.cli import common
from tfkd.cli import flags as tfkd_flags

FLAGS = flags.FLAGS


tfkd_flags.define_data_flags(names=("teacher", "temperature", "alpha", "superclass_map",
                                    "classifier_layer", "output_dir", "overwrite", "verbose"))
flags.DEFINE_string("student_model", None,
                    "For the gradient plot: a trained student (.keras / SavedModel) or an "
                    "architecture (analysed at initialisation); unset skips the plot.")
flags.DEFINE_list("analysis_temperatures", ["1", "4"],
                  "Temperatures of the teacher-correlation heatmaps.")
flags.DEFINE_enum("analysis_split", "train", ["train", "validation", "test"],
                  "Which split the analyses read.")
flags.DEFINE_integer("analysis_examples", 5000,
                     "Random examples of the split to analyse (0 = all).")


def _temperatures():
    try:
        values = [float(value) for value in FLAGS.analysis_temperatures]
    except ValueError:
        raise ValueError("--analysis_temperatures must be a comma list of numbers > 0, got "
                         f"{','.join(FLAGS.analysis_temperatures)}") from None
    if not values or min(values) <= 0:
        raise ValueError("--analysis_temperatures must be a comma list of numbers > 0")
    return values


def check_flags():
    if not FLAGS.teacher or not os.path.exists(FLAGS.teacher):
        raise ValueError(f"--teacher must name a trained teacher (.keras file or SavedModel "
                         f"folder), got {FLAGS.teacher!r}")
    if FLAGS.output_dir is None:
        raise ValueError("--output_dir is required")
    if FLAGS.analysis_examples < 0:
        raise ValueError("--analysis_examples must be >= 0")
    if not 0.0 <= FLAGS.alpha <= 1.0 or FLAGS.temperature <= 0:
        raise ValueError("--alpha must be in [0, 1] and --temperature > 0")
    return _temperatures()


def _examples(bundle):
    x, y = getattr(bundle, FLAGS.analysis_split)
    if len(y) < 2:
        raise ValueError(f"--analysis_split={FLAGS.analysis_split} has {len(y)} examples; "
                         "need at least 2")
    if FLAGS.analysis_examples and FLAGS.analysis_examples < len(y):
        chosen = np.random.default_rng(FLAGS.seed).choice(len(y), FLAGS.analysis_examples,
                                                           replace=False)
        x, y = x[np.sort(chosen)], y[np.sort(chosen)]
    return data.to_float(x), np.asarray(y)


def _student(bundle):
    spec = FLAGS.student_model
    if os.path.exists(spec):
        return teachers.load_model(spec, "--student_model"), spec
    if spec not in models.MODELS:
        raise ValueError(f"--student_model: {spec!r} is neither a model file or SavedModel "
                         f"folder nor a known architecture; known: {', '.join(models.names())}")
    mean, variance = bundle.stats()
    return models.build(spec, bundle.input_shape, bundle.num_classes, mean, variance,
                        seed=FLAGS.seed), f"{spec} (initialisation)"


def _superclasses(bundle):
    try:
        return partial.superclass_map(bundle, FLAGS.superclass_map, bundle.num_classes)
    except ValueError:
        if FLAGS.superclass_map:
            raise
        return None


def class_relationships(teacher, teacher_logits, bundle, temperatures, work_dir):
    superclass_of = _superclasses(bundle)
    correlations = {t: analysis.class_correlation(analysis.softmax(teacher_logits, t))
                    for t in temperatures}
    try:
        cosine = analysis.classifier_cosine(
            partial.classifier_weights(teacher, FLAGS.classifier_layer))
    except ValueError as error:
        print(f"no classifier-weight heatmap: {error}")
        cosine = None
    analysis.plot_class_relationships(correlations, cosine, superclass_of,
                                      os.path.join(work_dir, "class_relationships.png"),
                                      title=f"{bundle.name}")
    summary = {"superclass_of": None if superclass_of is None else superclass_of.tolist(),
               "correlation": {f"{t:g}": {} for t in temperatures}}
    for t, matrix in correlations.items():
        entry = summary["correlation"][f"{t:g}"]
        if cosine is not None:
            entry["pearson_with_cosine"] = analysis.off_diagonal_pearson(matrix, cosine)
        if superclass_of is not None:
            entry["block_contrast"] = analysis.block_contrast(matrix, superclass_of)
    if cosine is not None and superclass_of is not None:
        summary["cosine_block_contrast"] = analysis.block_contrast(cosine, superclass_of)
    return summary


def run():
    temperatures = check_flags()
    common.check_output_dir(FLAGS.output_dir, FLAGS.overwrite)
    bundle = data.load(tfkd_flags.data_config())
    teacher = teachers.load_model(FLAGS.teacher)
    x, y = _examples(bundle)
    verbose = 1 if FLAGS.verbose == 1 else 0
    teacher_logits = teacher.predict(x, batch_size=256, verbose=verbose)
    results = {"teacher": FLAGS.teacher, "dataset": FLAGS.dataset, "split": FLAGS.analysis_split,
               "examples": int(len(y)),
               "teacher_accuracy": float(np.mean(teacher_logits.argmax(-1) == y))}
    with common.staging_dir(FLAGS.output_dir) as work_dir:
        results["class_relationships"] = class_relationships(teacher, teacher_logits, bundle,
                                                             temperatures, work_dir)
        if FLAGS.student_model:
            student, name = _student(bundle)
            student_logits = student.predict(x, batch_size=256, verbose=verbose)
            weights, p_true = analysis.gradient_rescaling(student_logits, teacher_logits, y,
                                                          FLAGS.temperature, FLAGS.alpha)
            analysis.plot_gradient_rescaling(weights, p_true,
                                             os.path.join(work_dir, "gradient_rescaling.png"),
                                             title=f"T = {FLAGS.temperature:g}, "
                                                   f"alpha = {FLAGS.alpha:g}:")
            results["gradient_rescaling"] = {
                "student": name, "temperature": FLAGS.temperature, "alpha": FLAGS.alpha,
                "pearson_w_pt": analysis.pearson(weights, p_true),
                "spearman_w_pt": analysis.spearman(weights, p_true),
                "w_mean": float(weights.mean()), "w_median": float(np.median(weights))}
        with open(os.path.join(work_dir, "analysis.json"), "w") as handle:
            json.dump(results, handle, indent=2)
    _print_summary(results)
    return results


def _print_summary(results):
    print(f"\ntfkd analyze: teacher {results['teacher']} on {results['dataset']} "
          f"({results['split']}, {results['examples']} examples, teacher accuracy "
          f"{results['teacher_accuracy']:.4f})")
    relationships = results["class_relationships"]
    for t, entry in relationships["correlation"].items():
        parts = [f"{key} {value:+.3f}" for key, value in entry.items()]
        print(f"  correlation at T = {t:<5}" + ", ".join(parts))
    if "cosine_block_contrast" in relationships:
        contrast = relationships["cosine_block_contrast"]
        print(f"  classifier cosine    block_contrast {contrast:+.3f}")
    if "gradient_rescaling" in results:
        entry = results["gradient_rescaling"]
        print(f"  gradient rescaling   Pearson(w_i, p_t) = {entry['pearson_w_pt']:+.3f}, "
              f"Spearman {entry['spearman_w_pt']:+.3f} "
              f"(student {entry['student']}, T = {entry['temperature']:g}, "
              f"alpha = {entry['alpha']:g})")
    print(f"  output  {FLAGS.output_dir}: class_relationships.png"
          + (", gradient_rescaling.png" if "gradient_rescaling" in results else "")
          + ", analysis.json")


def main(argv):
    common.no_positional_arguments(argv)
    run()


def entry():
    common.app_run(main)
