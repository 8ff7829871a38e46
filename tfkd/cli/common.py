"""What every command-line tool shares: --help, user errors as one line, output folders."""
import contextlib
import os
import shutil
import sys

from absl import app, flags, logging

from tfkd import data
from tfkd.cli import flags as flag_table
from tfkd.io import replace

USER_ERRORS = (ValueError, FileExistsError, FileNotFoundError, data.DataUnavailableError,
               OSError)


def one_line(program, error):
    message = " ".join(str(error).split())
    if isinstance(error, OSError) and not isinstance(error, (FileExistsError,
                                                                FileNotFoundError)):
        message = f"cannot write or read {error.filename or ''}: {error.strerror or message}"
    return f"{os.path.basename(program)}: error: {message}"


def quiet_python_logs():
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")


def run_tool(main, argv=None):
    """Calls `main(argv)` with user errors shown as one line on stderr and exit status 2
    (TFKD_DEBUG=1 re-raises them with the traceback)."""
    argv = list(sys.argv if argv is None else argv)
    logging.set_verbosity(logging.WARNING)
    quiet_python_logs()
    try:
        main(argv)
    except USER_ERRORS as error:
        if os.environ.get("TFKD_DEBUG"):
            raise
        print(one_line(argv[0], error), file=sys.stderr)
        sys.exit(2)


def handle_help(argv, doc, extra=None):
    """--help prints the tool's own flags, grouped, and exits 0; --helpfull adds absl's."""
    args = argv[1:]
    if not {"--help", "-h", "--helpshort", "--helpfull", "-?"} & set(args):
        return
    flag_values = flag_table.new_flag_values(extra)
    print(flag_table.help_text(flag_values, "bin/", doc))
    if "--helpfull" in args:
        print("\nabsl flags:\n" + flags.FLAGS.main_module_help())
    sys.exit(0)


def app_run(main):
    """absl's app.run for the tools on absl's global flags, with user errors as one line."""
    def guarded(argv):
        logging.set_verbosity(logging.WARNING)
        quiet_python_logs()
        try:
            return main(argv)
        except USER_ERRORS as error:
            if os.environ.get("TFKD_DEBUG"):
                raise
            print(one_line(argv[0], error), file=sys.stderr)
            sys.exit(2)
    app.run(guarded)


def no_positional_arguments(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])} (flags start with --)")


def check_output_dir(path, overwrite):
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise FileExistsError(f"--output_dir {path} exists and is not empty; pass --overwrite "
                              "to replace it")
    if os.path.exists(path) and not os.path.isdir(path):
        raise FileExistsError(f"--output_dir {path} exists and is not a folder")


@contextlib.contextmanager
def staging_dir(output_dir):
    """A sibling folder that becomes `output_dir` only when the job succeeds."""
    output_dir = os.path.abspath(output_dir)
    staging = f"{output_dir}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    try:
        yield staging
        replace(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
