"""docs/RESULTS.md, docs/results_summary.json and docs/GUIDE.md are what their generators write
from the committed data files (fast: the generators read JSON and CSV only, no TensorFlow)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")


def generate(script, out):
    subprocess.run(
        [sys.executable, os.path.join(DOCS, script), "--out", str(out)],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


@pytest.mark.parametrize(
    "script, files",
    [
        ("make_results.py", ("RESULTS.md", "results_summary.json")),
        ("make_guide.py", ("GUIDE.md", "guide.json")),
    ],
)
def test_committed_page_is_what_the_script_writes(tmp_path, script, files):
    if not os.path.isfile(os.path.join(DOCS, script)):
        pytest.skip(f"docs/{script} not committed")
    generate(script, tmp_path)
    for name in files:
        assert read(tmp_path / name) == read(os.path.join(DOCS, name)), (
            f"docs/{name} differs from what docs/{script} writes: run python3 docs/{script}"
        )
