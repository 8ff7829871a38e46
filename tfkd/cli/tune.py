"""`bin/tune`: flags -> RunConfig and search settings -> tfkd.tuning.tune.

Takes every `bin/distill` flag plus --tuner, --max_trials and --search_space; see
`tfkd.tuning.tune` for what it writes.
"""

from absl import flags

from tfkd import tuning
from tfkd.cli import common
from tfkd.cli import flags as flag_table

PROGRAM = "bin/tune"
DOC = (
    "Search distillation hyperparameters with keras-tuner: bin/tune "
    "--flagfile=configs/synthetic.flags [--search_space=configs/search/kd.json] [--flag=...]"
)


def define_tune_flags(flag_values):
    """bin/tune's own flags, under the module name "bin/tune" (listed by --help)."""
    own = {"flag_values": flag_values, "module_name": PROGRAM}
    flags.DEFINE_enum(
        "tuner",
        "random",
        tuning.TUNERS,
        "keras-tuner algorithm: random search, Hyperband (up to --epochs per "
        "trial) or Bayesian optimisation.",
        **own,
    )
    flags.DEFINE_integer(
        "max_trials",
        10,
        "Trials in all; re-running with a larger value resumes and adds trials.",
        **own,
    )
    flags.DEFINE_string(
        "search_space",
        None,
        'JSON file: flag name -> list of choices or {"min", "max", '
        '"scale": "linear" or "log"}. Default: configs/search/'
        "<method>.json, else the method's default space and a log-scale "
        "--learning_rate.",
        **own,
    )


def main(argv):
    """Runs bin/tune on `argv` (program name first); returns the results dictionary."""
    common.handle_help(argv, DOC, extra=define_tune_flags)
    flag_values = flag_table.parse(
        argv[1:], flag_table.new_flag_values(extra=define_tune_flags), program=PROGRAM
    )
    config = flag_table.to_config(flag_values)
    return tuning.tune(
        config,
        tuner=flag_values["tuner"].value,
        max_trials=flag_values["max_trials"].value,
        search_space=flag_values["search_space"].value,
    )


def entry():
    common.run_tool(main)
