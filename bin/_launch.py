"""Starts a tfkd tool: `bin/<tool>` calls `main("<tool>")`.

TensorFlow's C++ start-up lines (oneDNN, CUDA probes) go to stderr before its logging is set up,
whatever TF_CPP_MIN_LOG_LEVEL says; they are silenced while TensorFlow is imported. Set
TFKD_DEBUG=1 to see them (and full tracebacks).
"""
import contextlib
import importlib
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def quiet_stderr():
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


def main(tool):
    sys.path.insert(0, ROOT)
    if not os.environ.get("TFKD_DEBUG"):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet_stderr():
        import tensorflow  # noqa: F401
        module = importlib.import_module(f"tfkd.cli.{tool}")
    module.entry()
