"""The wheel works outside the checkout: built, installed into a new virtual environment, and
run from another folder (`tfkd --version`, `tfkd distill --help` without TensorFlow, a tiny
packaged recipe writing where --output_dir says). Also: every packaged recipe is listed and
found by name, and the shipped --help texts are what the flag declarations print."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv

import pytest

from tfkd.cli import help_text, main, recipes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ("tfkd", "pyproject.toml", "README.md", "LICENSE")
TINY = [
    "--synthetic_size=400",
    "--synthetic_dim=8",
    "--synthetic_classes=4",
    "--synthetic_superclasses=2",
    "--teacher=mlp_small",
    "--teacher_epochs=1",
    "--student=mlp_small",
    "--epochs=1",
    "--verbose=0",
    "--export=keras",
    "--nobaseline",
]


def _files(folder):
    return {
        os.path.relpath(os.path.join(path, name), folder)
        for path, _, names in os.walk(folder)
        if "__pycache__" not in path
        for name in names
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(tfkd command, environment's python, its site-packages) of the wheel in a new venv that
    reads the dependencies from this environment (nothing is downloaded)."""
    base = tmp_path_factory.mktemp("package")
    source = base / "source"
    for name in SOURCES:  # a clean copy: no stale build/ folder can leak into the wheel
        copy = shutil.copytree if os.path.isdir(os.path.join(ROOT, name)) else shutil.copy
        kwargs = (
            {"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}
        )
        copy(os.path.join(ROOT, name), source / name, **kwargs)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(base / "wheel"),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (base / "wheel").glob("tfkd-*.whl")
    environment = base / "env"
    venv.EnvBuilder(with_pip=False).create(environment)
    python = environment / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # A plain path line: this environment's packages, without its editable tfkd.
    with open(os.path.join(site, "dependencies.pth"), "w") as handle:
        handle.write(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    return environment / "bin" / "tfkd", python, site


def _run(command, folder, **env):
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("TFKD_DEBUG", "PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL")
    }
    return subprocess.run(
        [str(part) for part in command],
        cwd=folder,
        capture_output=True,
        text=True,
        env={**environment, **env},
        timeout=600,
    )


def test_the_installed_command_runs_outside_the_checkout(installed, tmp_path):
    tfkd, python, site = installed
    where = _run([python, "-c", "import tfkd; print(tfkd.__file__)"], tmp_path)
    assert where.stdout.startswith(site), where.stdout + where.stderr

    version = _run([tfkd, "--version"], tmp_path)
    assert version.returncode == 0 and version.stdout == "tfkd 0.1.0\n"

    helped = _run([tfkd, "distill", "--help"], tmp_path, PYTHONPROFILEIMPORTTIME="1")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith(help_text.read("distill").rstrip("\n"))
    imported = [
        line.split("|")[-1].strip()
        for line in helped.stderr.splitlines()
        if line.startswith("import time:")
    ]
    assert "tfkd.cli.main" in imported
    assert not [name for name in imported if name.split(".")[0] in ("tensorflow", "keras")]

    before = _files(site)
    out = tmp_path / "run"
    run = _run([tfkd, "distill", "--config=synthetic", *TINY, f"--output_dir={out}"], tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "oneDNN" not in run.stderr and "cuda" not in run.stderr.lower()
    with open(out / "results.json") as handle:
        results = json.load(handle)
    assert results["flags"]["synthetic_size"] == 400 and results["method"] == "kd"
    assert (out / "report.md").is_file() and (out / "student.keras").is_file()
    assert run.stdout.rstrip("\n").splitlines()[-1].endswith(f"report {out / 'report.md'}")
    assert _files(site) == before


def test_every_packaged_recipe_is_listed_and_found_by_name(capsys):
    names = recipes.names()
    assert {"synthetic", "fashion_mnist", "cifar10", "methods/dkd"} <= set(names)
    assert main.main(["distill", "--list_configs"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == names
    for name, line in zip(names, listed, strict=True):
        with open(recipes.path(name)) as handle:
            first = next(text for text in handle if text.startswith("#"))
        assert line.endswith(first.lstrip("#").strip())
    assert recipes.expand(["--config=methods/dkd", "--epochs=1"]) == [
        f"--flagfile={os.path.join(recipes.CONFIGS, 'methods', 'dkd.flags')}",
        "--epochs=1",
    ]
    assert recipes.expand(["--config", "synthetic"]) == [
        f"--flagfile={os.path.join(recipes.CONFIGS, 'synthetic.flags')}"
    ]


def test_an_unknown_recipe_lists_the_known_ones(capsys):
    assert main.main(["distill", "--config=nope"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("tfkd distill: error: --config: 'nope' is not a packaged recipe")
    assert "methods/dkd" in error and "synthetic" in error and len(error.splitlines()) == 1


def test_a_recipe_names_the_missing_file_it_needs_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main.main(["distill", "--config=fashion_mnist"]) == 2
    error = capsys.readouterr().err
    assert len(error.splitlines()) == 1
    assert "--teacher=savedmodels/fashion_mnist-teacher/teacher.keras" in error
    with pytest.raises(ValueError, match="needs --dataset=idx:/no/such/folder"):
        recipes.expand(
            ["--config=fashion_mnist", "--teacher=mlp"],
            root=_recipe(tmp_path, "--dataset=idx:/no/such/folder\n--teacher=t.keras\n"),
        )
    # A flag given on the command line replaces the recipe's, so its file is not needed.
    assert recipes.expand(
        ["--config=fashion_mnist", "--teacher=mlp", "--dataset=synthetic"],
        root=tmp_path / "recipes",
    )[1:] == ["--teacher=mlp", "--dataset=synthetic"]


def _recipe(folder, text):
    root = folder / "recipes"
    root.mkdir(exist_ok=True)
    (root / "fashion_mnist.flags").write_text("# a recipe\n" + text)
    return root


@pytest.mark.parametrize("tool", sorted(help_text.TOOLS))
def test_the_shipped_help_is_what_the_flag_declarations_print(tool):
    import difflib

    shipped, declared = help_text.read(tool), help_text.generate(tool)
    difference = "".join(
        list(difflib.unified_diff(shipped.splitlines(True), declared.splitlines(True)))[:12]
    )
    assert shipped == declared, (
        f"tfkd/cli/help/{tool}.txt is out of date: run python -m tfkd.cli.help_text\n{difference}"
    )


def _declared_flags(tool):
    """The flag names `tool --help` declares, read from the parsers themselves (absl FlagValues,
    argparse) while the tool prints its help, not from the text."""
    import argparse

    from absl import flags

    names, module_help, format_help = (
        set(),
        flags.FlagValues.module_help,
        argparse.ArgumentParser.format_help,
    )

    def record_module(flag_values, module):
        names.update(flag.name for flag in flag_values.flags_by_module_dict().get(module, ()))
        return module_help(flag_values, module)

    def record_parser(parser):
        names.update(
            option[2:]
            for action in parser._actions
            for option in action.option_strings
            if option.startswith("--") and action.help != argparse.SUPPRESS
        )
        return format_help(parser)

    flags.FlagValues.module_help = record_module
    argparse.ArgumentParser.format_help = record_parser
    try:
        help_text.generate(tool)
    finally:
        flags.FlagValues.module_help = module_help
        argparse.ArgumentParser.format_help = format_help
    return names


def test_the_command_line_reference_lists_every_flag_of_every_command():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "gen_cli", os.path.join(ROOT, "docs", "gen_cli.py")
    )
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    page = generator.markdown()
    for tool in help_text.TOOLS:
        section = page.split(f"\n## tfkd {tool}\n", 1)[1].split("\n## tfkd ", 1)[0]
        assert generator.parse(help_text.read(tool)) is not None, tool  # tables, not text
        declared = _declared_flags(tool)
        assert len(declared) > 5, tool
        missing = {
            name
            for name in declared
            if f"--{name}" not in section and f"--[no]{name}" not in section
        }
        assert not missing, f"tfkd {tool}: {sorted(missing)}"


def test_python_dash_m_tfkd_answers_help_and_version_without_tensorflow(tmp_path):
    version = _run([sys.executable, "-m", "tfkd", "--version"], tmp_path, PYTHONPATH=ROOT)
    assert version.returncode == 0 and version.stdout == "tfkd 0.1.0\n"
    helped = _run(
        [sys.executable, "-X", "importtime", "-m", "tfkd", "export", "--help"],
        tmp_path,
        PYTHONPATH=ROOT,
    )
    assert helped.returncode == 0 and helped.stdout.startswith(help_text.read("export"))
    imported = {
        line.split("|")[-1].strip()
        for line in helped.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "tfkd.cli.help_text" in imported and "tensorflow" not in imported
    unknown = _run([sys.executable, "-m", "tfkd", "distil"], tmp_path, PYTHONPATH=ROOT)
    assert unknown.returncode == 2
    assert unknown.stderr == (
        "tfkd: error: 'distil' is not a tfkd command; known: distill, "
        "tune, export, calibrate, ladder, analyze, bench\n"
    )
