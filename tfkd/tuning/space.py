"""Search spaces: a JSON object of flag name -> list of choices or range, parsed and checked.

    {"temperature": [1, 2, 4, 8], "alpha": {"min": 0.1, "max": 0.9},
     "learning_rate": {"min": 1e-4, "max": 1e-2, "scale": "log"}}

The names are `bin/distill` flags: the options of the chosen method and the training flags in
`TRAINING_HYPERPARAMETERS`. Without a file, a method's space is `configs/search/<method>.json`
of this repository when there is one, else `default_search_space(method)`.
"""

import dataclasses
import json
import math
import os

from tfkd import methods, training

SCALES = ("linear", "log")
# tfkd/configs/search/, shipped with the package: the per-method search spaces.
SEARCH_FOLDER = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "search"
)
DEFAULT_LEARNING_RATE = {"min": 1e-3, "max": 0.1, "scale": "log"}


@dataclasses.dataclass(frozen=True)
class Tunable:
    """What a tunable flag accepts: kind is float, int, bool or string; choices for enums."""

    kind: str
    choices: tuple = ()


# Training flags that may be searched. `epochs` is the trial budget (Hyperband's maximum), not a
# hyperparameter.
TRAINING_HYPERPARAMETERS = {
    "learning_rate": Tunable("float"),
    "weight_decay": Tunable("float"),
    "warmup_epochs": Tunable("float"),
    "batch_size": Tunable("int"),
    "optimizer": Tunable("string", training.OPTIMIZERS),
    "lr_schedule": Tunable("string", training.SCHEDULES),
    "augment": Tunable("bool"),
}


def _option_tunable(option):
    if option.choices:
        return Tunable("string", tuple(option.choices))
    for kind, python_type in (("bool", bool), ("int", int), ("float", float)):
        if isinstance(option.default, python_type):
            return Tunable(kind)
    return Tunable("string")


def tunables(method):
    """Name -> Tunable for every hyperparameter a search over `method` may set."""
    options = {
        option.name: _option_tunable(option) for option in methods.METHODS.get(method).options
    }
    return {**options, **TRAINING_HYPERPARAMETERS}


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
    """One searched flag: a list of choices, or a [low, high] range on a linear or log scale."""

    name: str
    kind: str
    values: tuple = ()
    low: float = None
    high: float = None
    scale: str = "linear"
    step: float = None

    def declare(self, hp):
        """Declares this hyperparameter on a keras_tuner.HyperParameters; returns its value."""
        if self.values:
            if self.kind == "bool" and set(self.values) == {True, False}:
                return hp.Boolean(self.name)
            return hp.Choice(self.name, list(self.values), ordered=self.kind in ("int", "float"))
        if self.kind == "int":
            step = int(self.step or 1) if self.scale == "linear" else None
            return hp.Int(self.name, int(self.low), int(self.high), step=step, sampling=self.scale)
        return hp.Float(self.name, self.low, self.high, step=self.step, sampling=self.scale)

    def extremes(self):
        return self.values or (self.low, self.high)


def _search_space_error(source, message):
    return ValueError(f"{source}: {message}")


def _unknown_name_message(name, method, known):
    owners = [
        other
        for other in methods.METHODS.names()
        if any(option.name == name for option in methods.METHODS.get(other).options)
    ]
    if owners:
        return (
            f"{name!r} is an option of method {', '.join(owners)}, not of --method={method}; "
            f"tunable for {method}: {', '.join(sorted(known))}"
        )
    return (
        f"{name!r} is not a hyperparameter of any method in this build; tunable for "
        f"--method={method}: {', '.join(sorted(known))}"
    )


def _check_value(source, name, tunable, value):
    """`value` converted to the flag's type, or a ValueError saying what was expected."""
    if tunable.kind == "bool":
        ok = isinstance(value, bool)
    elif tunable.kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tunable.kind == "float":
        ok = (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
    else:
        ok = isinstance(value, str) and (not tunable.choices or value in tunable.choices)
    if not ok:
        expected = {"bool": "true or false", "int": "an integer", "float": "a finite number"}.get(
            tunable.kind, "one of " + ", ".join(tunable.choices) if tunable.choices else "a string"
        )
        raise _search_space_error(source, f"{name}: {value!r} is not {expected}")
    return float(value) if tunable.kind == "float" else value


def _parse_entry(source, name, tunable, spec):
    if isinstance(spec, dict) and set(spec) == {"values"}:
        spec = spec["values"]
    if isinstance(spec, list):
        if not spec:
            raise _search_space_error(source, f"{name}: the list of choices is empty")
        values = tuple(_check_value(source, name, tunable, value) for value in spec)
        if len(set(values)) != len(values):
            raise _search_space_error(source, f"{name}: the choices {spec} repeat a value")
        return Hyperparameter(name, tunable.kind, values=values)
    if not isinstance(spec, dict):
        raise _search_space_error(
            source,
            f"{name}: expected a list of choices or a range "
            f'{{"min": ..., "max": ..., "scale": "linear" or "log"}}, got {spec!r}',
        )
    unknown = sorted(set(spec) - {"min", "max", "scale", "step"})
    if unknown:
        raise _search_space_error(
            source,
            f"{name}: unknown range field(s) {', '.join(unknown)}; "
            "a range has min, max, scale and step",
        )
    if tunable.kind not in ("int", "float"):
        raise _search_space_error(
            source, f"{name} is a {tunable.kind} flag: give a list of choices, not a range"
        )
    if "min" not in spec or "max" not in spec:
        raise _search_space_error(source, f"{name}: a range needs both min and max")
    low = _check_value(source, name, tunable, spec["min"])
    high = _check_value(source, name, tunable, spec["max"])
    if not low < high:
        raise _search_space_error(source, f"{name}: min must be < max, got {low} and {high}")
    scale = spec.get("scale", "linear")
    if scale not in SCALES:
        raise _search_space_error(
            source, f"{name}: scale must be one of {', '.join(SCALES)}, got {scale!r}"
        )
    if scale == "log" and low <= 0:
        raise _search_space_error(source, f"{name}: a log scale needs min > 0, got {low}")
    step = spec.get("step")
    if step is not None:
        step = _check_value(source, name, tunable, step)
        if step <= 0 or scale != "linear":
            raise _search_space_error(source, f"{name}: step must be > 0 and needs a linear scale")
    return Hyperparameter(name, tunable.kind, low=low, high=high, scale=scale, step=step)


def parse_search_space(spec, method, source="search space"):
    """A JSON-like dict name -> choices or range -> tuple of Hyperparameter.

    Raises ValueError naming `source` and the offending entry for an unknown name, a name of
    another method, a value of the wrong type or outside the flag's choices, and a bad range.
    """
    if not isinstance(spec, dict) or not spec:
        raise _search_space_error(
            source,
            "expected a non-empty JSON object mapping hyperparameter names to choices or ranges",
        )
    known = tunables(method)
    space = []
    for name, entry in spec.items():
        if name not in known:
            raise _search_space_error(source, _unknown_name_message(name, method, known))
        space.append(_parse_entry(source, name, known[name], entry))
    return tuple(space)


def default_search_space(method):
    """The method's declared search space (`Method.search_space`) plus a log-scale learning
    rate, as JSON."""
    spec = dict(methods.METHODS.get(method).search_space)
    spec["learning_rate"] = dict(DEFAULT_LEARNING_RATE)
    return spec


def read_search_space(path, method, flag="--search_space"):
    """The search space as JSON and where it came from: (spec, source).

    `path` None or "": `configs/search/<method>.json` of this repository when it exists, else
    `default_search_space(method)`. Errors name the flag and the file.
    """
    if not path:
        committed = os.path.join(SEARCH_FOLDER, f"{method}.json")
        if not os.path.isfile(committed):
            return default_search_space(method), f"the default search space of --method={method}"
        path, flag = committed, f"{flag} (default)"
    source = f"{flag} {path}"
    if not os.path.isfile(path):
        raise ValueError(f"{source} does not exist")
    with open(path) as handle:
        try:
            return json.load(handle), source
        except json.JSONDecodeError as error:
            raise _search_space_error(source, f"not valid JSON ({error})") from None


def load_search_space(path, method, flag="--search_space"):
    """Reads (see `read_search_space`) and parses a search space: a tuple of Hyperparameter."""
    spec, source = read_search_space(path, method, flag)
    return parse_search_space(spec, method, source)
