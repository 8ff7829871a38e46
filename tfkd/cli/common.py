"""What every command-line tool shares: --help and user errors as one line (fields named as
the flags that set them)."""

import os
import sys

from absl import flags, logging

from tfkd import data
from tfkd.cli import flags as flag_table

USER_ERRORS = (ValueError, FileExistsError, FileNotFoundError, data.DataUnavailableError, OSError)


def one_line(program, error):
    message = " ".join(str(flag_table.flag_error(error)).split())
    if isinstance(error, OSError) and not isinstance(error, (FileExistsError, FileNotFoundError)):
        message = f"cannot write or read {error.filename or ''}: {error.strerror or message}"
    return f"{os.path.basename(program)}: error: {message}"


def quiet_python_logs():
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")


def run_tool(main, argv=None):
    """Returns `main(argv)`, with user errors shown as one line on stderr and exit status 2
    (TFKD_DEBUG=1 re-raises them with the traceback)."""
    argv = list(sys.argv if argv is None else argv)
    logging.set_verbosity(logging.WARNING)
    quiet_python_logs()
    try:
        return main(argv)
    except USER_ERRORS as error:
        if os.environ.get("TFKD_DEBUG"):
            raise
        print(one_line(argv[0], error), file=sys.stderr)
        sys.exit(2)


def handle_help(argv, doc, extra=None, flag_values=None):
    """--help prints the tool's own flags, grouped, and exits 0; --helpfull adds absl's.

    The flags are bin/distill's plus `extra(flag_values)`'s, or those of `flag_values`."""
    args = argv[1:]
    if not {"--help", "-h", "--helpshort", "--helpfull", "-?"} & set(args):
        return
    if flag_values is None:
        flag_values = flag_table.new_flag_values(extra)
    print(flag_table.help_text(flag_values, "bin/", doc))
    if "--helpfull" in args:
        print("\nabsl flags:\n" + flags.FLAGS.get_help())
    sys.exit(0)
