"""Command lines <-> configs: absl flags built from the fields' `tfkd.settings` declarations.

`CommandLine(RunConfig, method_options=True)` is `bin/distill`'s flag table: one flag per
declared field of the config and of the configs it nests (type and default from the config's
own default, so the two cannot drift), plus one per option of every registered method. The
table is built when first used, in a fresh `absl.flags.FlagValues` (no global state), so
importing tfkd defines no flag.
"""

import dataclasses

from absl import flags

from tfkd import methods, settings

GROUPS = ("data", "models", "method", "training", "output")
OPTIONS = "method.options."


@dataclasses.dataclass(frozen=True)
class Row:
    """One flag: its --help group, name, config path, help, choices, default and role."""

    group: str
    flag: str
    path: str
    help: str
    choices: tuple
    default: object
    zero_is_none: bool = False
    role: str = settings.STUDENT
    type: object = None


def define_flag(flag_values, row, module_name):
    """Defines `row`'s flag in `flag_values` (its type from the default, or from the field's
    type when the default is None) unless it is there."""
    if row.flag in flag_values:
        return
    kwargs = {"flag_values": flag_values, "module_name": module_name}
    default, name, help_text = row.default, row.flag, row.help
    kind = type(default) if default is not None else settings.strip_optional(row.type)
    if row.zero_is_none:
        flags.DEFINE_integer(name, default or 0, help_text, **kwargs)
    elif row.choices:
        flags.DEFINE_enum(name, default, row.choices, help_text, **kwargs)
    elif kind is bool:
        flags.DEFINE_boolean(name, default, help_text, **kwargs)
    elif kind is int:
        flags.DEFINE_integer(name, default, help_text, **kwargs)
    elif kind is float:
        flags.DEFINE_float(name, default, help_text, **kwargs)
    elif isinstance(default, tuple):
        flags.DEFINE_list(name, list(default), help_text, **kwargs)
    else:
        flags.DEFINE_string(name, default, help_text, **kwargs)


def own_rows(config_class, group=None):
    """The rows of `config_class`'s own declared fields (not of the configs it nests), each
    with the field's name as its path; `group` overrides the declared group."""
    rows = []
    for field in dataclasses.fields(config_class):
        found = settings.declaration(field)
        if found is not None:
            rows.append(
                Row(
                    group or found.group,
                    found.flag or field.name,
                    field.name,
                    found.help,
                    found.choices,
                    field.default,
                    found.zero_is_none,
                    found.role,
                    field.type,
                )
            )
    return rows


def flag_value(row, flag_values):
    """The config value of `row`'s parsed flag: 0 -> None where 0 means all, lists -> tuples."""
    value = flag_values[row.flag].value
    if row.zero_is_none:
        return value or None
    if isinstance(value, list):
        return tuple(item.strip() for item in value if item.strip())
    return value


def build(config_class, tree, default=None):
    """`config_class` with the values of the nested dict `tree` over `default`'s (the class's
    defaults when None); a nested config's ConfigError names the field from the top."""
    default = config_class() if default is None else default
    parts = {}
    for field in dataclasses.fields(config_class):
        value = tree.get(field.name, getattr(default, field.name))
        inner = getattr(default, field.name)
        if dataclasses.is_dataclass(inner) and isinstance(value, dict):
            try:
                value = build(type(inner), value, inner)
            except settings.ConfigError as error:
                raise error.within(field.name) from None
        parts[field.name] = value
    return config_class(**parts)


def _set(tree, path, value):
    head, _, rest = path.partition(".")
    if not rest:
        tree[head] = value
    else:
        _set(tree.setdefault(head, {}), rest, value)


class CommandLine:
    """The flags of `config_class` (with `method_options`: and of the registered methods'
    options, under "method"), for the program `program`."""

    def __init__(self, config_class, program="bin/distill", method_options=False):
        self.config_class, self.program = config_class, program
        self.method_options = method_options
        self._rows = None

    def rows(self):
        """Every flag, by group; computed once (after the method modules registered)."""
        if self._rows is None:
            defaults = self.config_class()
            found = list(settings.declared(self.config_class))
            groups = [*GROUPS, *sorted({item.setting.group for item in found} - set(GROUPS))]
            rows = []
            for group in groups:
                rows += [
                    Row(
                        group,
                        item.flag,
                        item.path,
                        item.setting.help,
                        item.setting.choices,
                        settings.value_at(defaults, item.path),
                        item.setting.zero_is_none,
                        item.setting.role,
                        item.type,
                    )
                    for item in found
                    if item.setting.group == group
                ]
                if group == "method" and self.method_options:
                    rows += [
                        Row(
                            group,
                            option.name,
                            OPTIONS + option.name,
                            option.help,
                            option.choices,
                            option.default,
                        )
                        for option in methods.all_options().values()
                    ]
            self._rows = tuple(rows)
        return self._rows

    def flag_name(self, path):
        """ "--flag" of the field at `path` (a method option's own name), or None."""
        if path.startswith(OPTIONS) and self.method_options:
            return "--" + path[len(OPTIONS) :]
        for row in self.rows():
            if row.path == path:
                return "--" + row.flag
        return None

    def define(self, flag_values, groups=None, module_prefix=None, names=None):
        """Defines the flags of `groups` (default: all), or just `names`, in `flag_values`, each
        under the module name '<prefix> <group>'; flags already defined there are left alone."""
        module_prefix = module_prefix or self.program
        for row in self.rows():
            if (
                names is not None
                and row.flag not in names
                or names is None
                and groups is not None
                and row.group not in groups
            ):
                continue
            define_flag(flag_values, row, f"{module_prefix} {row.group}")
        return flag_values

    def new_flag_values(self, extra=None):
        """A fresh FlagValues with every flag (and `extra(flag_values)`'s own)."""
        flag_values = flags.FlagValues()
        self.define(flag_values)
        if extra is not None:
            extra(flag_values)
        return flag_values

    def parse(self, args, flag_values=None, program=None):
        """Parses command-line strings into `flag_values` (default: a fresh one); returns it.

        Raises ValueError with absl's one-line reason (an unknown flag, a bad value, a missing
        flagfile) or for positional arguments.
        """
        flag_values = self.new_flag_values() if flag_values is None else flag_values
        try:
            rest = flag_values([program or self.program, *args])
        except flags.Error as error:
            message = " ".join(str(error).split())
            if "Unable to open flagfile" in message:
                message = (
                    "--flagfile: cannot open " + message.split("No such file or directory: ")[-1]
                )
            raise ValueError(message) from None
        if len(rest) > 1:
            raise ValueError(f"unexpected arguments: {' '.join(rest[1:])} (flags start with --)")
        return flag_values

    def to_config(self, flag_values):
        """The config of parsed flags; method options only where given, for the chosen method.
        Raises ConfigError naming the flag."""
        tree, own = {}, set()
        if self.method_options:
            name = flag_values["method"].value
            if name not in methods.METHODS:
                raise settings.ConfigError(
                    "method.name",
                    f"`method.name`: {name!r} is not a known method; known: "
                    f"{', '.join(methods.METHODS.names())}",
                ).named(self.flag_name)
            own = {option.name for option in methods.METHODS.get(name).options}
            tree["method"] = {"options": {}}
        for row in self.rows():
            if row.flag not in flag_values:
                continue
            if row.path.startswith(OPTIONS):
                if row.flag in own and flag_values[row.flag].present:
                    tree["method"]["options"][row.flag] = flag_values[row.flag].value
                continue
            _set(tree, row.path, flag_value(row, flag_values))
        try:
            return build(self.config_class, tree)
        except settings.ConfigError as error:
            raise error.named(self.flag_name) from None

    def part(self, flag_values, prefix):
        """The nested config at `prefix` (e.g. "data") of the flags in `flag_values` that
        reach it, the others at the config's defaults."""
        tree = {}
        for row in self.rows():
            if row.path.startswith(prefix + ".") and row.flag in flag_values:
                _set(tree, row.path[len(prefix) + 1 :], flag_value(row, flag_values))
        default = settings.value_at(self.config_class(), prefix)
        try:
            return build(type(default), tree, default)
        except settings.ConfigError as error:
            raise error.within(prefix).named(self.flag_name) from None

    def to_values(self, config, roles=settings.ROLES):
        """{flag: value} of `config`'s fields whose role is in `roles`: every flag but those at
        None, and the method options given."""
        values = {}
        options = config.method.options if self.method_options else {}
        for row in self.rows():
            if row.path.startswith(OPTIONS):
                if row.flag in options and settings.STUDENT in roles:
                    values[row.flag] = options[row.flag]
                continue
            if row.role not in roles:
                continue
            value = settings.value_at(config, row.path)
            if row.zero_is_none:
                value = value or 0
            if value is not None:
                values[row.flag] = list(value) if isinstance(value, tuple) else value
        return values

    def to_args(self, config):
        """Command-line strings for `config` (every flag, so that a flagfile stands alone)."""
        return [argument(name, value) for name, value in self.to_values(config).items()]


def argument(name, value):
    """One command-line string: --name=value, --name / --noname for booleans."""
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    if isinstance(value, (list, tuple)):
        return f"--{name}={','.join(map(str, value))}"
    if isinstance(value, float):
        return f"--{name}={value!r}"
    return f"--{name}={value}"


def flagfile_text(args, comments=()):
    """An absl flagfile: optional '# ' comment lines, then one argument per line."""
    return "\n".join([f"# {comment}" for comment in comments] + list(args)) + "\n"
