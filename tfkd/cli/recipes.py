"""Packaged recipes: the flagfiles under `tfkd/configs/`, found by name.

`tfkd distill --config=synthetic` reads `tfkd/configs/synthetic.flags`; `--config=methods/dkd`
reads `tfkd/configs/methods/dkd.flags`. Nothing here imports TensorFlow: the dispatcher turns
`--config=NAME` into `--flagfile=PATH` before the tool starts.
"""

import os

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
SUFFIX = ".flags"
# Flags whose value names a file or folder that must exist before the run starts:
# flag -> how the value names it (a path, a comma list of paths, or a data-source prefix).
PATH_FLAGS = {
    "teacher": "path",
    "teachers": "list",
    "dataset": "source",
    "distill_dataset": "source",
    "data_dir": "path",
}
ARCHIVES = (".keras", ".h5")
SOURCE_PREFIXES = ("idx:", "npz:", "folder:", "csv:", "text:", "lm:")


def names(root=CONFIGS):
    """Every recipe name, sorted: paths under `root` without the .flags suffix."""
    found = []
    for folder, _, files in os.walk(root):
        for file in files:
            if file.endswith(SUFFIX):
                relative = os.path.relpath(os.path.join(folder, file), root)
                found.append(relative[: -len(SUFFIX)].replace(os.sep, "/"))
    return sorted(found)


def path(name, root=CONFIGS):
    """The flagfile of recipe `name`; ValueError naming --config and listing the known ones."""
    name = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
    known = names(root)
    if name not in known:
        raise ValueError(f"--config: {name!r} is not a packaged recipe; known: {', '.join(known)}")
    return os.path.join(root, *name.split("/")) + SUFFIX


def summary(name, root=CONFIGS):
    """The first comment line of recipe `name`, without the '# '."""
    with open(path(name, root)) as handle:
        for line in handle:
            if line.startswith("#"):
                return line.lstrip("#").strip()
    return ""


def listing(root=CONFIGS):
    """One line per recipe: its name, then its first comment line."""
    known = names(root)
    width = max(len(name) for name in known) + 2
    return "\n".join(f"{name:<{width}}{summary(name, root)}" for name in known)


def read_flags(flagfile):
    """{flag name: value} of the `--name=value` lines of a flagfile (the last one wins)."""
    values = {}
    with open(flagfile) as handle:
        for line in handle:
            line = line.strip()
            if line.startswith("--") and "=" in line:
                key, value = line[2:].split("=", 1)
                values[key] = value
    return values


def _names_a_path(flag, item):
    """True when `item`, a value of --flag, is a file or folder rather than an architecture."""
    return flag == "data_dir" or item.endswith(ARCHIVES) or "/" in item or os.sep in item


def _named_paths(flag, value):
    """The files or folders that `--flag=value` names (none for an architecture or a tfds name)."""
    kind = PATH_FLAGS[flag]
    if kind == "source":
        prefix = next((p for p in SOURCE_PREFIXES if value.startswith(p)), None)
        return [value[len(prefix) :]] if prefix else []
    items = [item.strip() for item in (value.split(",") if kind == "list" else [value])]
    return [item for item in items if item and _names_a_path(flag, item)]


def missing(name, flagfile, given):
    """One line naming the first file or folder recipe `name` needs that does not exist (flags
    given on the command line, `given`, replace the recipe's), or None."""
    for flag, value in read_flags(flagfile).items():
        if flag not in PATH_FLAGS or flag in given:
            continue
        for needed in _named_paths(flag, value):
            if not os.path.exists(os.path.expanduser(needed)):
                where = (
                    ""
                    if os.path.isabs(os.path.expanduser(needed))
                    else f" (relative to {os.getcwd()})"
                )
                return (
                    f"--config={name} needs --{flag}={value}, but {needed} does not "
                    f"exist{where}; see the comments at the top of {flagfile}"
                )
    return None


def _given(args):
    return {arg[2:].split("=", 1)[0] for arg in args if arg.startswith("--")}


def expand(args, root=CONFIGS):
    """Command-line strings with each `--config=NAME` (or `--config NAME`) replaced by
    `--flagfile=PATH`; ValueError for an unknown name or a file the recipe needs that is missing.
    """
    expanded, pending = [], list(args)
    given = _given(args) - {"config", "flagfile"}
    while pending:
        arg = pending.pop(0)
        if arg == "--config":
            if not pending:
                raise ValueError(f"--config needs a recipe name; known: {', '.join(names(root))}")
            arg = f"--config={pending.pop(0)}"
        if arg.startswith("--config="):
            name = arg.split("=", 1)[1]
            flagfile = path(name, root)
            problem = missing(name, flagfile, given)
            if problem:
                raise ValueError(problem)
            arg = f"--flagfile={flagfile}"
        expanded.append(arg)
    return expanded
