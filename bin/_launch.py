"""Starts a tfkd tool from a checkout: `bin/<tool>` calls `main("<tool>")`, the same as
`tfkd <tool>` (`tfkd.cli.main`), with this checkout first on the import path."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(tool):
    sys.path.insert(0, ROOT)
    from tfkd.cli.main import main as dispatch

    sys.exit(dispatch([tool, *sys.argv[1:]], program=sys.argv[0]))
