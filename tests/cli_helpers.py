"""Running bin/distill's job in-process, and parsing the other tools' absl flags."""
from absl import flags

from tfkd import experiment


def parse(args, program="tool"):
    """Parses `args` into absl's global FLAGS (bin/calibrate, bin/export, bin/analyze)."""
    flags.FLAGS.unparse_flags()
    flags.FLAGS([program, *args])


def config(args):
    return experiment.RunConfig.from_flags(args)


def run_distill(args):
    """What `bin/distill ARGS` runs, in this process; returns results.json's dictionary."""
    return experiment.run(config(args))
