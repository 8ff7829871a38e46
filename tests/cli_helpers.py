"""Running bin/distill's job in-process."""
from tfkd import experiment


def config(args):
    return experiment.RunConfig.from_flags(args)


def run_distill(args):
    """What `bin/distill ARGS` runs, in this process; returns results.json's dictionary."""
    return experiment.run(config(args))
