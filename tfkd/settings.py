"""Config fields that describe themselves: flag, group, help, choices, range and role.

    @dataclasses.dataclass(frozen=True)
    class TrainConfig:
        batch_size: int = setting(128, group="training", help="Global batch size.", minimum=1)

        def __post_init__(self):
            settings.check(self)

One declaration per field serves every reader: `tfkd.experiment.command_line` builds the absl
flags of a config class from it and maps command lines to configs and back, `--help` groups the
flags by it, and a run's resume key and results.json's record of settings select fields by their
role. A field without a `setting` is not on the command line (e.g. `TrainConfig.momentum`).

Errors name fields, not flags: `ConfigError.field` is the field's dotted path in the config
("method.options.temperature", "cache.mode") and the message writes fields in backquotes;
`str()` shows them as paths and `render(name)` as whatever `name(path)` says (the command line
shows `--temperature`, `--teacher_cache`).
"""

import dataclasses
import math
import re
from typing import Any, Optional

# What a field changes, which decides the resume keys (`tfkd.experiment.RunConfig.settings`).
TEACHER = "teacher"  # the teachers trained by a run (and so everything after them)
STUDENT = "student"  # the distillation only
OUTPUT = "output"  # only what a finished run writes (export formats, the baseline)
REPORT = "report"  # only how a run reports or where it writes: never blocks a resume
ROLES = (TEACHER, STUDENT, OUTPUT, REPORT)

METADATA_KEY = "tfkd.setting"
FIELD_REFERENCE = re.compile(r"`([A-Za-z_][\w.]*)`")


@dataclasses.dataclass(frozen=True)
class Setting:
    """What a config field declares about itself (see `setting`)."""

    group: str
    help: str
    flag: Optional[str] = None
    choices: tuple = ()
    minimum: Any = None
    maximum: Any = None
    open_minimum: bool = False
    open_maximum: bool = False
    zero_is_none: bool = False
    role: str = STUDENT

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {self.role!r}")


def setting(
    default=dataclasses.MISSING, *, group, help, default_factory=dataclasses.MISSING, **declared
):
    """A dataclass field that declares its command-line flag.

    Args:
      default, default_factory: as `dataclasses.field`.
      group: the `--help` section (data, models, method, training, output).
      help: the flag's help.
      declared: `Setting`'s other fields: flag (default: the field's name), choices, minimum,
        maximum, open_minimum, open_maximum, zero_is_none (an integer whose None, "all", is 0
        on the command line) and role (TEACHER, STUDENT, OUTPUT or REPORT; default STUDENT).
    """
    return dataclasses.field(
        default=default,
        default_factory=default_factory,
        metadata={METADATA_KEY: Setting(group, help, **declared)},
    )


def declaration(field):
    """The `Setting` of a dataclass field, or None."""
    return field.metadata.get(METADATA_KEY)


@dataclasses.dataclass(frozen=True)
class Declared:
    """A declared field of a config class: its dotted path, flag name, Setting and type."""

    path: str
    flag: str
    setting: Setting
    type: Any


def declared(config_class, prefix=""):
    """Every declared field of `config_class` and of the config classes it nests, in order."""
    for field in dataclasses.fields(config_class):
        path = prefix + field.name
        if dataclasses.is_dataclass(field.type):
            yield from declared(field.type, path + ".")
            continue
        found = declaration(field)
        if found is not None:
            yield Declared(path, found.flag or field.name, found, field.type)


def value_at(config, path):
    """The value at a dotted `path` of `config` (dict keys included: "method.options.alpha")."""
    for part in path.split("."):
        config = config[part] if isinstance(config, dict) else getattr(config, part)
    return config


class ConfigError(ValueError):
    """A setting that cannot run.

    Attributes:
      field: the dotted path of the field at fault, from the config that raised it.
      message: the text, with fields written as `path` in backquotes.
    """

    def __init__(self, field, message, name=None):
        self.field, self.message, self.name = field, message, name
        super().__init__(self.render(name))

    def render(self, name=None):
        """The message with every `path` written as `name(path)` (the path itself when `name`
        is None or returns None)."""

        def spell(match):
            path = match.group(1)
            return (name(path) if name is not None else None) or path

        return FIELD_REFERENCE.sub(spell, self.message)

    def named(self, name):
        """This error, shown with `name(path)` for every field (e.g. the command line's flags)."""
        return ConfigError(self.field, self.message, name)

    def within(self, prefix):
        """This error of a nested config, its paths seen from the config holding it at
        `prefix` (e.g. "schedule")."""
        message = FIELD_REFERENCE.sub(lambda match: f"`{prefix}.{match.group(1)}`", self.message)
        return ConfigError(f"{prefix}.{self.field}", message, self.name)

    def __str__(self):
        return self.render(self.name)

    def __reduce__(self):
        return ConfigError, (self.field, self.message)


def changed(before, now):
    """The names whose values differ between two {name: value} records of settings (a missing
    name differs from any value), sorted: "same settings, so resume?" is `not changed(...)`."""
    return [name for name in sorted(set(before) | set(now)) if before.get(name) != now.get(name)]


def range_text(minimum=None, maximum=None, open_minimum=False, open_maximum=False):
    """ "in [0, 1)", "> 0", "<= 5" or "" for the given bounds."""
    if minimum is not None and maximum is not None:
        return (
            f"in {'(' if open_minimum else '['}{minimum}, {maximum}{')' if open_maximum else ']'}"
        )
    if minimum is not None:
        return f"{'>' if open_minimum else '>='} {minimum}"
    if maximum is not None:
        return f"{'<' if open_maximum else '<='} {maximum}"
    return ""


def check_value(
    value,
    choices=(),
    minimum=None,
    maximum=None,
    open_minimum=False,
    open_maximum=False,
    integer=False,
    noun=True,
):
    """What is wrong with `value` for the declared choices and range ("must be ..."), or None.

    `noun` adds "an integer" / "a number" before a one-sided range ("must be an integer >= 1")."""
    if choices and value not in choices:
        return f"must be one of {', '.join(map(str, choices))}, got {value!r}"
    if minimum is None and maximum is None:
        return None
    bounds = range_text(minimum, maximum, open_minimum, open_maximum)
    one_sided = minimum is None or maximum is None
    kind = "an integer" if integer else "a number"
    expected = f"{kind} {bounds}" if noun and one_sided else bounds
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if (
        not number
        or (isinstance(value, float) and math.isnan(value))
        or (integer and not isinstance(value, int))
    ):
        return f"must be {kind} {bounds}, got {value!r}"
    low_ok = minimum is None or (value > minimum if open_minimum else value >= minimum)
    high_ok = maximum is None or (value < maximum if open_maximum else value <= maximum)
    return None if low_ok and high_ok else f"must be {expected}, got {value!r}"


def _is_integer(field_type):
    return field_type is int or field_type == Optional[int]


def check(config):
    """Raises ConfigError for the first declared field of `config` (not of the configs it
    nests, which check themselves) outside its choices or range; None passes where the field's
    type allows it (Optional)."""
    for field in dataclasses.fields(config):
        found = declaration(field)
        if found is None:
            continue
        value = getattr(config, field.name)
        if value is None and field.type != strip_optional(field.type):
            continue
        reason = check_value(
            value,
            found.choices,
            found.minimum,
            found.maximum,
            found.open_minimum,
            found.open_maximum,
            _is_integer(field.type),
        )
        if reason is not None:
            raise ConfigError(field.name, f"`{field.name}` {reason}")


def strip_optional(field_type):
    """X for Optional[X], else the type itself."""
    arguments = getattr(field_type, "__args__", ())
    if len(arguments) == 2 and type(None) in arguments:
        return next(argument for argument in arguments if argument is not type(None))
    return field_type
