"""`bin/ladder`: flags -> RunConfig + the ladder's teachers, modes and seeds ->
tfkd.experiment.ladder.run_ladder.

Takes every bin/distill flag (data, training, --method and its options, --teaching, --curriculum,
--student, --teacher_epochs, --baseline, --output_dir, ...) except the ones the ladder sets
itself: --teacher and --teachers (the teachers are --ladder_teachers) and --calibrate_teacher and
--calibration_mode (the modes are --ladder_modes).
"""
from absl import flags

from tfkd.cli import common
from tfkd.cli import flags as flag_table
from tfkd.experiment import ladder
from tfkd.targets import CALIBRATION_MODES

PROGRAM = "bin/ladder"
DOC = ("The teacher ladder, uncalibrated vs calibrated: "
       "bin/ladder --ladder_teachers=resnet8,resnet14 [any bin/distill flag]")
NOT_APPLICABLE = {"teacher": "--ladder_teachers", "teachers": "--ladder_teachers",
                  "calibrate_teacher": "--ladder_modes", "calibration_mode": "--ladder_modes"}


def define_ladder_flags(flag_values):
    """--ladder_teachers, --ladder_modes and --ladder_seeds, in `flag_values`."""
    flags.DEFINE_list("ladder_teachers", ["resnet8", "resnet14", "resnet20", "resnet32"],
                      "Teachers, smallest first: architectures to train or .keras/SavedModel "
                      "paths.", flag_values=flag_values, module_name=PROGRAM)
    flags.DEFINE_list("ladder_modes", list(CALIBRATION_MODES),
                      "Calibration modes distilled besides the uncalibrated teacher: scale "
                      "(teacher logits / T*), replace (distillation temperature = T*).",
                      flag_values=flag_values, module_name=PROGRAM)
    flags.DEFINE_integer("ladder_seeds", 1,
                         "Students per (teacher, mode), seeds --seed, --seed+1, ...",
                         flag_values=flag_values, module_name=PROGRAM)


def parse(args):
    """Command-line strings -> (RunConfig, teachers, modes, seeds); ValueError on bad input."""
    flag_values = flag_table.parse(args, flag_table.new_flag_values(define_ladder_flags),
                                   PROGRAM)
    for name, instead in NOT_APPLICABLE.items():
        if flag_values[name].present:
            raise ValueError(f"--{name} does not apply to bin/ladder; it is set from "
                             f"{instead}")
    return (flag_table.to_config(flag_values), flag_values.ladder_teachers,
            flag_values.ladder_modes, flag_values.ladder_seeds)


def main(argv):
    """Runs bin/ladder on `argv` (program name first); returns the results dictionary."""
    common.handle_help(argv, DOC, extra=define_ladder_flags)
    config, teachers, modes, seeds = parse(argv[1:])
    return ladder.run_ladder(config, teachers, modes, seeds,
                             command=" ".join([PROGRAM, *argv[1:]]))


def entry():
    common.run_tool(main)
