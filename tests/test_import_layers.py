"""The architecture contracts of pyproject.toml ([tool.importlinter]) hold, and they bite: a
library module that imports the command line breaks them. Importing the library defines no
command-line flag."""

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORBIDDEN = "No library module imports the command line (tfkd.cli)"


def lint_imports(folder):
    """`lint-imports` on the checkout at `folder` (its tfkd first on the import path)."""
    script = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    command = [script] if os.path.exists(script) else ["lint-imports"]
    env = {**os.environ, "PYTHONPATH": folder}
    return subprocess.run(
        [*command, "--no-cache"], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )


def copy_of_the_package(tmp_path):
    shutil.copytree(
        os.path.join(ROOT, "tfkd"), tmp_path / "tfkd", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{FORBIDDEN} KEPT" in result.stdout


def test_a_library_module_importing_the_command_line_breaks_the_contract(tmp_path):
    folder = copy_of_the_package(tmp_path)
    with open(folder / "tfkd" / "losses" / "soft_targets.py", "a") as handle:
        handle.write("\nfrom tfkd.cli import flags  # noqa: E402,F401\n")
    result = lint_imports(str(folder))
    assert result.returncode != 0, result.stdout
    assert f"{FORBIDDEN} BROKEN" in result.stdout
    assert "tfkd.losses.soft_targets -> tfkd.cli.flags" in result.stdout


def test_the_tuner_reaching_into_a_run_breaks_its_contract(tmp_path):
    folder = copy_of_the_package(tmp_path)
    with open(folder / "tfkd" / "tuning" / "tuner.py", "a") as handle:
        handle.write("\nfrom tfkd.experiment import fitting  # noqa: E402,F401\n")
    result = lint_imports(str(folder))
    assert result.returncode != 0, result.stdout
    assert "The tuner uses tfkd.experiment's public API" in result.stdout
    assert "tfkd.tuning.tuner -> tfkd.experiment.fitting" in result.stdout


def test_a_deferred_import_of_the_command_line_breaks_it_too(tmp_path):
    folder = copy_of_the_package(tmp_path)
    with open(folder / "tfkd" / "experiment" / "job.py", "a") as handle:
        handle.write("\n\ndef _flags():\n    from tfkd.cli import flags\n    return flags\n")
    result = lint_imports(str(folder))
    assert result.returncode != 0 and f"{FORBIDDEN} BROKEN" in result.stdout, result.stdout


def test_importing_the_library_loads_no_command_line_module():
    code = (
        "import sys, tfkd.experiment, tfkd.tuning\n"
        "from tfkd.experiment import RunConfig\n"
        "RunConfig()\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('tfkd.cli'))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert result.returncode == 0, result.stderr[-2000:]
