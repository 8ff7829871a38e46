"""Distillation methods by name: what `--method` selects.

A method is a builder `build(student, teacher, data, options) -> keras.Model` plus declarations:
the options it reads (defaults, ranges, help, default search space), how many teachers it needs
and whether it reads intermediate features. The CLI defines one flag per option of every
registered method, `bin/tune` searches the declared spaces and the reports read the declared
teacher weighting, so a new method is one module under `tfkd/distillers/` that registers itself
here; nothing else changes.

`build(name, student, teacher, data=None, **options)` is the way to get any registered
distiller in Python.
"""

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Callable

from tfkd.registry import Registry

if TYPE_CHECKING:  # the annotations only: the registry does not import Keras
    import keras

METHODS = Registry("method", package="tfkd.distillers")


@dataclasses.dataclass(frozen=True)
class Option:
    """A method hyperparameter, exposed as the flag `--<name>`.

    `minimum` / `maximum` bound a number (None: unbounded); `open_minimum` makes the lower bound
    strict (`temperature > 0`). `build` refuses values outside the range by the flag's name.
    """

    name: str
    default: Any
    help: str
    choices: tuple = ()
    # The default search-space entry of `bin/tune` (a list of choices or {"min", "max",
    # "scale"}, as in `tfkd.tuning.parse_search_space`); None: not searched by default.
    search: object = dataclasses.field(default=None, hash=False)
    minimum: Any = None
    maximum: Any = None
    open_minimum: bool = False

    def range_text(self):
        """The accepted range as the error message states it, or ""."""
        if self.minimum is not None and self.maximum is not None:
            return f"in {'(' if self.open_minimum else '['}{self.minimum}, {self.maximum}]"
        if self.minimum is not None:
            return f"{'>' if self.open_minimum else '>='} {self.minimum}"
        if self.maximum is not None:
            return f"<= {self.maximum}"
        return ""

    def check(self, value):
        """Raises ValueError naming --<name> when `value` is outside the declared range."""
        if self.choices and value not in self.choices:
            raise ValueError(
                f"--{self.name} must be one of {', '.join(map(str, self.choices))}, got {value!r}"
            )
        if self.minimum is None and self.maximum is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise ValueError(f"--{self.name} must be a number {self.range_text()}, got {value!r}")
        low_ok = (
            self.minimum is None or value > self.minimum
            if self.open_minimum
            else self.minimum is None or value >= self.minimum
        )
        if not low_ok or (self.maximum is not None and value > self.maximum):
            raise ValueError(f"--{self.name} must be {self.range_text()}, got {value}")


@dataclasses.dataclass(frozen=True)
class Method:
    """A registered method: its builder and what it declares.

    build: `build(student, teacher, data, options) -> keras.Model`; `teacher` is a list when
      `multi_teacher`, `options` holds every declared option.
    min_teachers: the smallest teacher count the method runs with (0 without a teacher).
    needs_features: it reads intermediate layers, so the models need a layer graph.
    weighting: multi-teacher methods: `options -> (weighting name, fixed weights or None)`, the
      logit weighting of `tfkd.teacher_weighting.teacher_weights` the built distiller uses.
    """

    build: Callable
    options: tuple = ()
    needs_teacher: bool = True
    description: str = ""
    # True: `build` receives a list of teachers (bin/distill --teachers=A,B,C).
    multi_teacher: bool = False
    min_teachers: int = None
    needs_features: bool = False
    weighting: Callable = dataclasses.field(default=None, hash=False, compare=False)

    def __post_init__(self):
        if self.min_teachers is None:
            object.__setattr__(self, "min_teachers", 1 if self.needs_teacher else 0)

    @property
    def search_space(self):
        """The default `bin/tune` space of the method's own options: {flag: entry}."""
        return {option.name: option.search for option in self.options if option.search is not None}

    def option(self, name):
        for option in self.options:
            if option.name == name:
                return option
        raise KeyError(name)

    def resolve(self, given, method_name="this method"):
        """Every declared option: `given` over the defaults, checked against the declared ranges.

        Raises:
          ValueError naming the unknown option(s) or the option out of range.
        """
        declared = {option.name: option for option in self.options}
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise ValueError(
                f"method {method_name!r} has no option {', '.join(unknown)}; its "
                f"options: {', '.join(declared) or 'none'}"
            )
        options = {name: option.default for name, option in declared.items()}
        options.update(given)
        for name, option in declared.items():
            option.check(options[name])
        return options


TEMPERATURE = Option(
    "temperature",
    4.0,
    "Distillation temperature T (> 0).",
    search=[1.0, 2.0, 4.0, 8.0],
    minimum=0,
    open_minimum=True,
)
ALPHA = Option(
    "alpha",
    0.9,
    "Weight of the distillation term; 1 - alpha weighs cross-entropy.",
    search={"min": 0.1, "max": 0.99},
    minimum=0,
    maximum=1,
)


def build(
    name: str,
    student: "keras.Model",
    teacher: "keras.Model | list | None",
    data: Any = None,
    **options: Any,
) -> "keras.Model":
    """The registered distiller `name` for `student` and `teacher` (a list for multi-teacher
    methods, None for methods without one), options not given at their declared defaults.

    Raises:
      ValueError for an unknown method, an unknown option (named) or an option out of range.
    """
    # Every method module is registered by then: importing any tfkd module runs tfkd/__init__,
    # which imports tfkd.distillers (a package scan of the method modules).
    method = METHODS.get(name)
    return method.build(student, teacher, data, method.resolve(options, name))


def all_options():
    """Every registered method's options, one per name.

    Methods may share an option with different defaults (`temperature` is 4 for KD, 1 for DIST):
    each method reads its own default when the flag is not given. Type, choices and range must
    agree; the flag shows the first declaration's default and the help lists the others.
    """
    options, defaults = {}, {}
    for name in METHODS.names():
        for option in METHODS.get(name).options:
            first = options.setdefault(option.name, option)
            if (
                type(first.default),
                first.choices,
                first.minimum,
                first.maximum,
                first.open_minimum,
            ) != (
                type(option.default),
                option.choices,
                option.minimum,
                option.maximum,
                option.open_minimum,
            ):
                raise ValueError(f"option --{option.name} is declared differently by two methods")
            if option.default != first.default:
                defaults.setdefault(option.name, {}).setdefault(option.default, []).append(name)
    for option_name, others in defaults.items():
        extra = "; ".join(
            f"default {value} for {', '.join(names)}" for value, names in others.items()
        )
        options[option_name] = dataclasses.replace(
            options[option_name], help=f"{options[option_name].help} ({extra})"
        )
    return options
