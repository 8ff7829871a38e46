"""The command-line tools' flags: built from the config's field declarations
(`tfkd.experiment.config.COMMAND_LINE`), plus `--help` and errors that name flags.

A library error names fields (`tfkd.settings.ConfigError`: "cache.mode", "method.options.alpha");
`flag_error` turns it into the flags the user typed (--teacher_cache, --alpha).
"""

import re

from absl import flags

from tfkd.experiment.config import COMMAND_LINE
from tfkd.settings import ConfigError


def new_flag_values(extra=None):
    """A fresh FlagValues with every bin/distill flag (and `extra(flag_values)`'s own)."""
    return COMMAND_LINE.new_flag_values(extra)


def parse(args, flag_values=None, program="bin/distill"):
    """Parses command-line strings into `flag_values` (default: a fresh one) and returns it;
    ValueError with absl's one-line reason."""
    return COMMAND_LINE.parse(args, flag_values, program)


def to_config(flag_values):
    """The RunConfig of parsed flags; ValueError naming the flag."""
    return COMMAND_LINE.to_config(flag_values)


def help_text(flag_values, program, doc):
    """`--help`: the program's summary, then its own flags grouped, without absl's."""
    lines = [doc.strip(), ""]
    for module in flag_values.flags_by_module_dict():
        if module.startswith(program):
            lines += [flag_values.module_help(module).rstrip(), ""]
    lines.append("--flagfile=FILE reads flags from FILE; --helpfull also lists absl's flags.")
    return "\n".join(lines)


# ---- bin/calibrate, bin/export and bin/analyze: their own flags plus rows of the table ------
def tool_flag_values(program, define_own, names=()):
    """A fresh FlagValues with `define_own(flag_values)`'s flags, the data group and the table's
    flags `names` (e.g. "temperature"), each under a module name starting with `program`."""
    flag_values = flags.FlagValues()
    define_own(flag_values)
    COMMAND_LINE.define(flag_values, groups=("data",), module_prefix=program)
    COMMAND_LINE.define(flag_values, module_prefix=program, names=names)
    return flag_values


def data_config(flag_values):
    """The DataConfig of the data flags in `flag_values`; ConfigError naming the flag."""
    return COMMAND_LINE.part(flag_values, "data")


def flag_name(path, extra=None):
    """ "--flag" of the RunConfig field at `path` (or of `extra`: {path: flag}), else None."""
    if extra and path in extra:
        return "--" + extra[path]
    return COMMAND_LINE.flag_name(path)


def flag_error(error, flag_values=None, extra=None):
    """`error` with the fields or argument names it names written as flags: a ConfigError's
    fields (RunConfig paths, or `extra`'s {path: flag}); otherwise the argument name a message
    starts with (`name` or `data_config.name`), if `flag_values` has that flag."""
    if isinstance(error, ConfigError):  # unless already named by its own command line
        return error if error.name is not None else error.named(lambda path: flag_name(path, extra))
    message = str(error)
    match = re.match(r"(?:data_config\.)?(\w+)", message)
    if flag_values is None or match is None or match.group(1) not in flag_values:
        return error
    return type(error)(f"--{match.group(1)}{message[match.end() :]}")
