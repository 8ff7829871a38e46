"""The package's layout keeps its shape: small modules, short signatures, unambiguous names, no
class swapping, and write-then-rename written once (tfkd/atomic.py). Reads the source only."""

import ast
import collections
import functools
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "tfkd")
MAX_LINES = 400
MAX_PARAMETERS = 8
RENAMER = os.path.join("tfkd", "atomic.py")


@functools.cache
def modules():
    """Every Python module of the package as (path relative to the repository, source)."""
    found = []
    for folder, folders, files in os.walk(PACKAGE):
        folders[:] = sorted(name for name in folders if name != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as handle:
                    found.append((os.path.relpath(path, ROOT), handle.read()))
    return tuple(found)


def parameters(function):
    """The parameters of a function definition, without self/cls and *args/**kwargs."""
    arguments = function.args
    named = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    names = [argument.arg for argument in named]
    if names and names[0] in ("self", "cls"):
        names = names[1:]
    return names


def test_the_checks_see_the_whole_package():
    paths = [path for path, _ in modules()]
    assert os.path.join("tfkd", "__init__.py") in paths
    assert RENAMER in paths
    assert len(paths) > 50


def test_no_module_is_longer_than_400_lines():
    long = {path: source.count("\n") for path, source in modules()}
    assert {path: lines for path, lines in long.items() if lines > MAX_LINES} == {}


def test_parameters_counts_what_a_caller_passes():
    tree = ast.parse(
        "def f(self, a, b=1, *args, c, **kwargs): pass\n"
        "def g(cls, /, x): pass\n"
        "def h(a, b, c, d, e, f, g, h, i): pass\n"
    )
    assert [parameters(node) for node in tree.body] == [
        ["a", "b", "c"],
        ["x"],
        ["a", "b", "c", "d", "e", "f", "g", "h", "i"],
    ]


# The constructors shown in the README, whose keyword arguments are the public API; to be
# grouped into option objects without breaking `tfkd.Distiller(student, teacher, temperature=...,
# alpha=...)` and `tfkd.MultiTeacherDistiller(student, teachers, weighting=...)`.
PUBLIC_CONSTRUCTORS = {
    "tfkd/distillers/base.py __init__",
    "tfkd/distillers/multi_teacher.py __init__",
}


def test_no_function_takes_more_than_8_parameters():
    """A function with more than 8 parameters takes a config object instead."""
    found = []
    for path, source in modules():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                count = len(parameters(node))
                if count > MAX_PARAMETERS and f"{path} {node.name}" not in PUBLIC_CONSTRUCTORS:
                    found.append(f"{path}:{node.lineno} {node.name} ({count})")
    assert found == []


def test_no_two_modules_share_a_stem():
    """`a/x.py` and `b/x.py` (or a package `b/x/`) read alike in imports and tracebacks; the
    one exception is a package and a module of its own (`x/__init__.py` and `x/x.py`)."""
    stems = collections.defaultdict(list)
    for path, _ in modules():
        folder, name = os.path.split(path)
        stem = os.path.splitext(name)[0]
        if stem == "__main__":  # `python -m` entry points
            continue
        if stem == "__init__":  # a package is named by its folder
            stem = os.path.basename(folder)
        stems[stem].append(path)
    shared = {}
    for stem, paths in stems.items():
        package = os.path.join(os.path.dirname(paths[0]), "__init__.py")
        own = package in paths and all(
            os.path.dirname(path) == os.path.dirname(package) for path in paths
        )
        if len(paths) > 1 and not own:
            shared[stem] = paths
    assert shared == {}


def test_no_class_is_swapped_at_run_time():
    found = []
    for path, source in modules():
        for node in ast.walk(ast.parse(source)):
            targets = node.targets if isinstance(node, ast.Assign) else []
            if isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr":
                name = node.args[1] if len(node.args) > 1 else None
                if isinstance(name, ast.Constant) and name.value == "__class__":
                    found.append(f"{path}:{node.lineno}")
            found += [
                f"{path}:{node.lineno}"
                for target in targets
                if isinstance(target, ast.Attribute) and target.attr == "__class__"
            ]
    assert found == []


def test_the_package_renames_only_through_the_atomic_helper():
    """Write-then-rename is written once: no module but tfkd/atomic.py calls os.replace or
    os.rename (or imports them)."""
    found = []
    for path, source in modules():
        if path == RENAMER:
            continue
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("replace", "rename")
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
            ):
                found.append(f"{path}:{node.lineno} os.{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module == "os":
                found += [
                    f"{path}:{node.lineno} from os import {alias.name}"
                    for alias in node.names
                    if alias.name in ("replace", "rename")
                ]
    assert found == []
