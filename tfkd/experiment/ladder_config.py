"""The teacher ladder's settings (`LadderConfig`, the flags of `bin/ladder`) and the names,
records and command lines made from them (`tfkd.experiment.calibration_ladder` runs it)."""

import dataclasses
import os
import time

from tfkd import methods
from tfkd.calibration import CALIBRATION_MODES
from tfkd.experiment import teacher_setup
from tfkd.experiment.config import RunConfig
from tfkd.settings import ConfigError, setting
from tfkd.settings import check as check_fields

UNCALIBRATED = "none"
FLAG = "--ladder_teachers"  # names the teachers in load errors
# bin/distill flags the ladder sets itself: left out of its record and of its resume key.
SET_BY_LADDER = ("teacher", "teachers", "calibrate_teacher", "calibration_mode")


def teacher_name(spec):
    """The row name of a teacher: an architecture's name, or a model path's file name."""
    if not teacher_setup.is_model_path(spec):
        return spec
    return os.path.splitext(os.path.basename(os.path.normpath(spec)))[0]


def ladder_values(teachers, modes, seeds):
    """{flag: value} of the ladder's own settings."""
    return {"ladder_teachers": list(teachers), "ladder_modes": list(modes), "ladder_seeds": seeds}


def flag_values(config, teachers, modes, seeds, scope=None):
    """{flag: value} of a ladder: its config's flags but SET_BY_LADDER, then its own; with
    `scope`, only the config's settings that must match to resume (`RunConfig.settings`)."""
    values = config.flag_values() if scope is None else config.settings(scope)
    values = {name: value for name, value in values.items() if name not in SET_BY_LADDER}
    return {**values, **ladder_values(teachers, modes, seeds)}


def distill_args(config):
    """The command-line strings of `config` but SET_BY_LADDER."""
    ignored = {*SET_BY_LADDER, *(f"no{name}" for name in SET_BY_LADDER)}
    return [arg for arg in config.to_flags() if arg[2:].split("=", 1)[0] not in ignored]


def ladder_args(teachers, modes, seeds):
    """The command-line strings of the ladder's own settings."""
    return [
        f"--ladder_teachers={','.join(teachers)}",
        f"--ladder_modes={','.join(modes)}",
        f"--ladder_seeds={seeds}",
    ]


@dataclasses.dataclass(frozen=True)
class LadderConfig:
    """A ladder: `run`, the RunConfig of every student and of the teachers trained here, and
    the ladder's own settings (each its `bin/ladder` flag). Refuses, naming the field (`run.`
    fields are the run's), what cannot run; teacher files are checked when the ladder starts."""

    run: RunConfig
    teachers: tuple = setting(
        ("resnet8", "resnet14", "resnet20", "resnet32"),
        flag="ladder_teachers",
        group="ladder",
        help="Teachers, smallest first: architectures to train or .keras/SavedModel paths.",
    )
    modes: tuple = setting(
        CALIBRATION_MODES,
        flag="ladder_modes",
        group="ladder",
        help="Calibration modes distilled besides the uncalibrated teacher: scale (teacher "
        "logits / T*), replace (distillation temperature = T*).",
    )
    seeds: int = setting(
        1,
        flag="ladder_seeds",
        group="ladder",
        minimum=1,
        help="Students per (teacher, mode), seeds --seed, --seed+1, ...",
    )

    def __post_init__(self):
        object.__setattr__(self, "teachers", tuple(self.teachers))
        object.__setattr__(self, "modes", tuple(self.modes))
        if self.run.calibration.enabled:
            raise ConfigError(
                "run.calibration.enabled",
                "`run.calibration.enabled` does not "
                "apply to the ladder: every teacher is distilled uncalibrated and "
                "under each of `modes`",
            )
        if not self.teachers:
            raise ConfigError("teachers", "`teachers` must list at least one teacher")
        names = [teacher_name(spec) for spec in self.teachers]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ConfigError(
                "teachers",
                f"`teachers`: two teachers are named "
                f"{', '.join(repeated)}; each row needs its own name (an "
                "architecture once, model files with distinct names)",
            )
        unknown = [mode for mode in self.modes if mode not in CALIBRATION_MODES]
        if unknown or len(set(self.modes)) < len(self.modes):
            raise ConfigError(
                "modes",
                f"`modes`: unknown or repeated mode(s) in "
                f"{', '.join(self.modes)}; known: {', '.join(CALIBRATION_MODES)}",
            )
        check_fields(self)
        name = self.run.method.name
        method = methods.METHODS.get(name)
        if not method.needs_teacher:
            raise ConfigError(
                "run.method.name",
                f"`run.method.name`={name} uses no teacher; the "
                "ladder needs a method that distills from one",
            )
        if method.multi_teacher:
            raise ConfigError(
                "run.method.name",
                f"`run.method.name`={name} is a multi-teacher "
                "method; the ladder distills from one teacher at a time",
            )
        if "replace" in self.modes and "temperature" not in {o.name for o in method.options}:
            raise ConfigError(
                "modes",
                f"`modes`=replace sets the distillation temperature, but "
                f"`run.method.name`={name} has no `run.method.options.temperature` "
                "option",
            )
        if self.run.data.validation_fraction == 0:
            raise ConfigError(
                "run.data.validation_fraction",
                "the ladder fits T* on the "
                "validation split, which is empty; set "
                "`run.data.validation_fraction` > 0",
            )


def check(ladder):
    """What the ladder's config cannot know: every teacher file exists and every teacher
    architecture is known. Returns the registered Method; ConfigError naming the field."""
    for spec in ladder.teachers:
        try:
            teacher_setup.check_teacher_spec(spec, "`teachers`")
        except ValueError as error:
            raise ConfigError("teachers", str(error)) from None
    return methods.METHODS.get(ladder.run.method.name)


def default_output_dir(config):
    return os.path.join("savedmodels", f"ladder-{config.student}-{time.strftime('%Y%m%d-%H%M%S')}")
