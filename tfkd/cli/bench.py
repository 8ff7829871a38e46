"""`bin/bench`: flags -> BenchConfig -> tfkd.benchmarks.run.

    bin/bench                                   # resnet56 -> resnet20, 32x32x3, batch 128
    bin/bench --teacher=cnn_small --student=cnn_small --steps=2 --repetitions=2 --rss=none

See `tfkd.benchmarks` for what is measured and how.
"""

import shlex

from tfkd import benchmarks as bench
from tfkd.cli import common
from tfkd.experiment.command_line import CommandLine
from tfkd.lm import throughput as lm_throughput

PROGRAM = "bin/bench"
DOC = (
    "Distillation throughput benchmark: bin/bench [--teacher=resnet56 --student=resnet20 "
    "--variants=...]"
)
COMMAND_LINE = CommandLine(bench.BenchConfig, program=PROGRAM)


def new_flag_values():
    return COMMAND_LINE.new_flag_values()


def parse(args):
    """Command-line strings -> BenchConfig; ValueError naming the flag on bad input."""
    return COMMAND_LINE.to_config(COMMAND_LINE.parse(args))


def main(argv):
    """Runs bin/bench on `argv` (program name first); returns the report.

    `bin/bench lm [--name=value ...]`: causal-LM throughput instead (`tfkd.lm.throughput`)."""
    if argv[1:2] == ["lm"]:
        return lm_throughput.main(argv[2:])
    common.handle_help(argv, DOC, flag_values=new_flag_values())
    config = parse(argv[1:])
    return bench.run(config, command=" ".join([PROGRAM, *map(shlex.quote, argv[1:])]))


def entry():
    common.run_tool(main)
