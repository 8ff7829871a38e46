"""`bin/analyze`: flags -> tfkd.experiment.teacher_knowledge.analyze.

What a teacher knows (Tang et al. 2020, Figs. 1 and 2), as PNGs and JSON in --output_dir:

  class_relationships.png  Pearson correlation of the teacher's distributions between classes
                           at each --analysis_temperatures, classes ordered by super-class, next
                           to the cosine similarity of the teacher's classifier weights.
  gradient_rescaling.png   w_i = |d L_KD / d z| / |d CE / d z| for the student's logits against
                           the teacher's p_t (needs --student_model).
  analysis.json            the numbers behind both.
"""

import dataclasses

from absl import flags

from tfkd.cli import common
from tfkd.cli import flags as flag_table
from tfkd.experiment import teacher_knowledge

PROGRAM = "bin/analyze"
DOC = (
    "What a teacher knows: class relationships and gradient rescaling: "
    "bin/analyze --teacher=RUN/teacher.keras --dataset=NAME --output_dir=DIR "
    "[--student_model=RUN/student.keras]"
)
SHARED = (
    "teacher",
    "temperature",
    "alpha",
    "superclass_map",
    "classifier_layer",
    "output_dir",
    "overwrite",
    "verbose",
)


def define_analyze_flags(flag_values):
    """bin/analyze's own flags, under the module name "bin/analyze"."""
    own = {"flag_values": flag_values, "module_name": PROGRAM}
    flags.DEFINE_string(
        "student_model",
        None,
        "For the gradient plot: a trained student (.keras / SavedModel) or an "
        "architecture (analysed at initialisation); unset skips the plot.",
        **own,
    )
    flags.DEFINE_list(
        "analysis_temperatures",
        ["1", "4"],
        "Temperatures of the teacher-correlation heatmaps.",
        **own,
    )
    flags.DEFINE_enum(
        "analysis_split",
        "train",
        list(teacher_knowledge.ANALYSIS_SPLITS),
        "Which split the analyses read.",
        **own,
    )
    flags.DEFINE_integer(
        "analysis_examples", 5000, "Random examples of the split to analyse (0 = all).", **own
    )


def new_flag_values():
    return flag_table.tool_flag_values(PROGRAM, define_analyze_flags, SHARED)


def arguments(flag_values):
    """Parsed flags -> the keyword arguments of teacher_knowledge.analyze."""
    options = {
        field.name: flag_values[field.name].value
        for field in dataclasses.fields(teacher_knowledge.AnalysisOptions)
    }
    return {
        "teacher": flag_values.teacher,
        "data_config": flag_table.data_config(flag_values),
        "output_dir": flag_values.output_dir,
        "student_model": flag_values.student_model,
        "options": teacher_knowledge.AnalysisOptions(**options),
        "overwrite": flag_values.overwrite,
        "verbose": flag_values.verbose,
    }


def print_summary(results, output_dir):
    print(
        f"\ntfkd analyze: teacher {results['teacher']} on {results['dataset']} "
        f"({results['split']}, {results['examples']} examples, teacher accuracy "
        f"{results['teacher_accuracy']:.4f})"
    )
    relationships = results["class_relationships"]
    for t, entry in relationships["correlation"].items():
        parts = [f"{key} {value:+.3f}" for key, value in entry.items()]
        print(f"  correlation at T = {t:<5}" + ", ".join(parts))
    if "cosine_block_contrast" in relationships:
        contrast = relationships["cosine_block_contrast"]
        print(f"  classifier cosine    block_contrast {contrast:+.3f}")
    if "gradient_rescaling" in results:
        entry = results["gradient_rescaling"]
        print(
            f"  gradient rescaling   Pearson(w_i, p_t) = {entry['pearson_w_pt']:+.3f}, "
            f"Spearman {entry['spearman_w_pt']:+.3f} "
            f"(student {entry['student']}, T = {entry['temperature']:g}, "
            f"alpha = {entry['alpha']:g})"
        )
    print(
        f"  output  {output_dir}: class_relationships.png"
        + (", gradient_rescaling.png" if "gradient_rescaling" in results else "")
        + ", analysis.json"
    )


def main(argv):
    """Runs bin/analyze on `argv` (program name first); returns analysis.json's dictionary."""
    common.handle_help(argv, DOC, flag_values=new_flag_values())
    flag_values = flag_table.parse(argv[1:], new_flag_values(), PROGRAM)
    try:
        results = teacher_knowledge.analyze(**arguments(flag_values))
    except (ValueError, FileExistsError) as error:
        raise flag_table.flag_error(error, flag_values) from error
    print_summary(results, flag_values.output_dir)
    return results


def entry():
    common.run_tool(main)
