"""`bin/ladder`: flags -> RunConfig + the ladder's teachers, modes and seeds ->
tfkd.experiment.calibration_ladder.run_ladder.

Takes every bin/distill flag (data, training, --method and its options, --teaching, --curriculum,
--student, --teacher_epochs, --baseline, --output_dir, ...) except the ones the ladder sets
itself: --teacher and --teachers (the teachers are --ladder_teachers) and --calibrate_teacher and
--calibration_mode (the modes are --ladder_modes).
"""

from tfkd.cli import common
from tfkd.cli import flags as flag_table
from tfkd.experiment import calibration_ladder as ladder
from tfkd.experiment import command_line
from tfkd.settings import ConfigError

PROGRAM = "bin/ladder"
DOC = (
    "The teacher ladder, uncalibrated vs calibrated: "
    "bin/ladder --ladder_teachers=resnet8,resnet14 [any bin/distill flag]"
)
NOT_APPLICABLE = {
    "teacher": "--ladder_teachers",
    "teachers": "--ladder_teachers",
    "calibrate_teacher": "--ladder_modes",
    "calibration_mode": "--ladder_modes",
}


LADDER_ROWS = command_line.own_rows(ladder.LadderConfig)


def define_ladder_flags(flag_values):
    """--ladder_teachers, --ladder_modes and --ladder_seeds (`LadderConfig`'s declarations),
    in `flag_values`."""
    for row in LADDER_ROWS:
        command_line.define_flag(flag_values, row, PROGRAM)


def flag_name(path):
    """ "--flag" of a LadderConfig field (its `run.` fields are bin/distill's flags)."""
    if path.startswith("run."):
        return flag_table.flag_name(path[len("run.") :])
    own = {row.path: row.flag for row in LADDER_ROWS}
    return "--" + own[path] if path in own else flag_table.flag_name(path)


def parse(args):
    """Command-line strings -> (RunConfig, teachers, modes, seeds); ValueError on bad input."""
    flag_values = flag_table.parse(args, flag_table.new_flag_values(define_ladder_flags), PROGRAM)
    for name, instead in NOT_APPLICABLE.items():
        if flag_values[name].present:
            raise ValueError(f"--{name} does not apply to bin/ladder; it is set from {instead}")
    config = flag_table.to_config(flag_values)
    values = {row.path: command_line.flag_value(row, flag_values) for row in LADDER_ROWS}
    try:
        settings = ladder.LadderConfig(config, **values)
    except ConfigError as error:
        raise error.named(flag_name) from None
    return config, settings.teachers, settings.modes, settings.seeds


def main(argv):
    """Runs bin/ladder on `argv` (program name first); returns the results dictionary."""
    common.handle_help(argv, DOC, extra=define_ladder_flags)
    config, teachers, modes, seeds = parse(argv[1:])
    try:
        return ladder.run_ladder(
            config, teachers, modes, seeds, command=" ".join([PROGRAM, *argv[1:]])
        )
    except ConfigError as error:
        raise error.named(flag_name) from None


def entry():
    common.run_tool(main)
