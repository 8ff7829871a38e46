"""Parsing command-line flags in-process, for tests that call a tool's `run()` directly."""
from absl import flags


def parse(args, program="tool"):
    flags.FLAGS.unparse_flags()
    flags.FLAGS([program, *args])
