"""Distillation methods by name: what `--method` selects.

A method is a builder `build(student, teacher, data, options) -> keras.Model` plus the options
it reads. The CLI defines one flag per option of every registered method, so a new method is a
new module that registers itself here and the CLI does not change.
"""
import dataclasses
from typing import Any, Callable

from tfkd.distillers import Distiller
from tfkd.registry import Registry

METHODS = Registry("method")


@dataclasses.dataclass(frozen=True)
class Option:
    """A method hyperparameter, exposed as the flag `--<name>`."""

    name: str
    default: Any
    help: str
    choices: tuple = ()
    # The default search-space entry of `bin/tune` (a list of choices or {"min", "max",
    # "scale"}, as in `tfkd.tuning.parse_search_space`); None: not searched by default.
    search: object = dataclasses.field(default=None, hash=False)


@dataclasses.dataclass(frozen=True)
class Method:
    build: Callable
    options: tuple = ()
    needs_teacher: bool = True
    description: str = ""
    # True: `build` receives a list of teachers (bin/distill --teachers=A,B,C).
    multi_teacher: bool = False


TEMPERATURE = Option("temperature", 4.0, "Distillation temperature T (> 0).",
                     search=[1.0, 2.0, 4.0, 8.0])
ALPHA = Option("alpha", 0.9, "Weight of the distillation term; 1 - alpha weighs cross-entropy.",
               search={"min": 0.1, "max": 0.99})


def _kd(student, teacher, data, options):
    return Distiller(student, teacher, temperature=options["temperature"], alpha=options["alpha"])


METHODS.register("kd", Method(_kd, (TEMPERATURE, ALPHA),
                              description="Hinton et al. 2015: (1-a) CE + a T^2 KL"))


def all_options():
    """Every registered method's options, one per name (shared options must agree)."""
    options = {}
    for name in METHODS.names():
        for option in METHODS.get(name).options:
            if option.name in options and options[option.name] != option:
                raise ValueError(f"option --{option.name} is declared differently by two methods")
            options[option.name] = option
    return options
