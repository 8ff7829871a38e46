"""`--name=value` arguments and `--flagfile=PATH` files read into a dataclass's fields.

The fields' defaults give the types: `--name` and `--noname` set a bool, numbers are parsed,
strings are taken as written. Lines of a flagfile starting with `#` are comments.
"""

import dataclasses
import os


def _expand(argv, seen=()):
    for argument in argv:
        if argument.startswith("--flagfile="):
            path = os.path.expanduser(argument[len("--flagfile=") :])
            if path in seen:
                raise ValueError(f"--flagfile {path} includes itself")
            try:
                with open(path) as handle:
                    lines = [line.strip() for line in handle]
            except OSError as error:
                raise ValueError(f"--flagfile: cannot open {path}: {error.strerror}") from None
            yield from _expand(
                [line for line in lines if line and not line.startswith("#")], (*seen, path)
            )
        else:
            yield argument


def _convert(name, text, default):
    try:
        if isinstance(default, bool):
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ValueError
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        raise ValueError(f"--{name} expects a {type(default).__name__}, got {text!r}") from None
    return text


def parse_flags(argv, config_class):
    """{field: value} for the flags in `argv` (later flags win); unknown flags are refused."""
    defaults = {field.name: field.default for field in dataclasses.fields(config_class)}
    values = {}
    for argument in _expand(argv):
        if not argument.startswith("--"):
            raise ValueError(f"expected --name=value, got {argument!r}")
        name, has_value, text = argument[2:].partition("=")
        if not has_value and name.startswith("no") and isinstance(defaults.get(name[2:]), bool):
            values[name[2:]] = False
            continue
        if name not in defaults:
            raise ValueError(f"unknown flag --{name}; known: {', '.join(sorted(defaults))}")
        if not has_value:
            if not isinstance(defaults[name], bool):
                raise ValueError(f"--{name} needs a value (--{name}=...)")
            values[name] = True
            continue
        values[name] = _convert(name, text, defaults[name])
    return values
