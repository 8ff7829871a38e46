"""`tfkd <tool> [flags]`: the one command; `tfkd --version`, `tfkd <tool> --help`.

Each tool is its module under `tfkd.cli` with exactly its flags. --help
and --version answer from package data without importing TensorFlow; a tool's module (and
TensorFlow) is imported only to run it, with TensorFlow's C++ start-up lines kept off the
terminal (TFKD_DEBUG=1 shows them, and full tracebacks). For distill, tune and ladder,
`--config=NAME` runs a packaged recipe (`--flagfile` of `tfkd/configs/NAME.flags`) and
`--list_configs` lists them.
"""

import contextlib
import importlib
import os
import sys

from tfkd import __version__
from tfkd.cli import help_text, recipes

HELP = {"--help", "-h", "--helpshort", "-?"}


def usage():
    width = max(len(tool) for tool in help_text.TOOLS) + 2
    lines = [
        f"tfkd {__version__}: knowledge distillation for Keras 3 on TensorFlow.",
        "",
        "usage: tfkd <command> [--flag=value ...]",
        "       tfkd <command> --help",
        "       tfkd --version",
        "",
        "commands:",
    ]
    lines += [f"  {tool:<{width}}{summary}" for tool, (_, summary) in help_text.TOOLS.items()]
    lines += [
        "",
        "Recipes: tfkd distill --config=synthetic; tfkd distill --list_configs lists them all.",
    ]
    return "\n".join(lines)


@contextlib.contextmanager
def quiet_stderr():
    """Silences file descriptor 2: TensorFlow's C++ start-up lines (oneDNN, CUDA probes) are
    written there before its logging is set up, whatever TF_CPP_MIN_LOG_LEVEL says."""
    if os.environ.get("TFKD_DEBUG"):
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _error(program, message):
    print(f"{os.path.basename(program)}: error: {message}", file=sys.stderr)
    return 2


def _help(tool):
    text = help_text.read(tool).rstrip("\n")
    if tool in help_text.RECIPE_TOOLS:
        text += (
            f"\n--config=NAME reads the packaged recipe NAME (tfkd {tool} --list_configs "
            "lists them)."
        )
    return text


def run(tool, program, args):
    """Imports the tool (and TensorFlow) quietly and runs it on `args`; returns its result."""
    if not os.environ.get("TFKD_DEBUG"):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet_stderr():
        import tensorflow  # noqa: F401

        module = importlib.import_module(help_text.TOOLS[tool][0])
    from tfkd.cli import common

    return common.run_tool(module.main, [program, *args])


def main(argv=None, program=None):
    """Runs `tfkd` on `argv` (default sys.argv[1:]); `program` names the command in messages
    (default "tfkd <tool>"). Returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in HELP | {"--helpfull", "help"}:
        print(usage())
        return 0
    if argv[0] == "--version":
        print(f"tfkd {__version__}")
        return 0
    tool, args = argv[0], argv[1:]
    if tool not in help_text.TOOLS:
        return _error(
            "tfkd", f"{tool!r} is not a tfkd command; known: {', '.join(help_text.TOOLS)}"
        )
    program = program or f"tfkd {tool}"
    if tool in help_text.RECIPE_TOOLS:
        if "--list_configs" in args:
            print(recipes.listing())
            return 0
        try:
            args = recipes.expand(args)
        except ValueError as error:
            return _error(program, error)
    if HELP & set(args) and "--helpfull" not in args:
        print(_help(tool))
        return 0
    run(tool, program, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
