"""`bin/distill`: flags -> RunConfig -> tfkd.experiment.run."""

from tfkd import experiment
from tfkd.cli import common


def main(argv):
    """Runs bin/distill on `argv` (program name first); returns the results dictionary."""
    common.handle_help(
        argv,
        "Distill a student from a teacher: "
        "bin/distill --flagfile=configs/synthetic.flags [--flag=...]",
    )
    return experiment.run(experiment.RunConfig.from_flags(argv[1:]))


def entry():
    common.run_tool(main)
