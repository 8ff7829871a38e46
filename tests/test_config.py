"""RunConfig refuses, when it is made, every combination of options that cannot run, naming the
field; the command line shows the flag of that field. The fields' declarations give every flag,
the resume keys and the record of settings."""

import dataclasses

import pytest

from tfkd import methods, settings
from tfkd.cli import common, distill
from tfkd.experiment import (
    CalibrationConfig,
    CurriculumConfig,
    MethodConfig,
    OutputConfig,
    RunConfig,
    TeacherConfig,
    TeachingConfig,
)
from tfkd.experiment.config import COMMAND_LINE, CacheConfig
from tfkd.settings import ConfigError

TINY = [
    "--dataset=synthetic",
    "--synthetic_size=200",
    "--synthetic_dim=8",
    "--synthetic_classes=4",
    "--synthetic_superclasses=2",
    "--teacher=mlp",
    "--student=mlp_small",
    "--epochs=1",
    "--verbose=0",
]
AVER = MethodConfig("aver")
TWO = TeacherConfig(specs=("mlp", "mlp_small"))

# (what RunConfig is made with, the field named, the flags, a fragment of the one-line error)
CONFLICTS = {
    "unknown_method": (
        {"method": MethodConfig("nope")},
        "method.name",
        ["--method=nope"],
        "--method: 'nope' is not a known method",
    ),
    "unknown_student": (
        {"student": "nope"},
        "student",
        ["--student=nope"],
        "--student: 'nope' is not a known model",
    ),
    "unknown_option": (
        {"method": MethodConfig("kd", {"topk": 2})},
        "method.options",
        ["--method=kd"],
        None,
    ),
    "option_out_of_range": (
        {"method": MethodConfig("kd", {"temperature": 0.0})},
        "method.options.temperature",
        ["--temperature=0"],
        "--temperature must be > 0, got 0.0",
    ),
    "unknown_export": (
        {"output": OutputConfig(export=("keras", "onnx"))},
        "output.export",
        ["--export=keras,onnx"],
        "--export: unknown format(s) onnx",
    ),
    "pacing_without_curriculum": (
        {"curriculum": CurriculumConfig(pacing="linear")},
        "curriculum.pacing",
        ["--pacing=linear"],
        "--pacing=linear paces a curriculum; pass --curriculum=teacher",
    ),
    "curriculum_without_teacher": (
        {"method": MethodConfig("ls"), "curriculum": CurriculumConfig(order="teacher")},
        "curriculum.order",
        ["--method=ls", "--curriculum=teacher"],
        "--curriculum=teacher needs a teacher",
    ),
    "curriculum_with_multi_teacher": (
        {"method": AVER, "teacher": TWO, "curriculum": CurriculumConfig(order="teacher")},
        "curriculum.order",
        ["--method=aver", "--teachers=mlp,mlp_small", "--curriculum=teacher"],
        "multi-teacher methods",
    ),
    "multi_teacher_without_teachers": (
        {"method": AVER},
        "teacher.specs",
        ["--method=aver"],
        "--teachers: method 'aver' needs a comma list",
    ),
    "too_few_teachers": (
        {"method": MethodConfig("ca_mkd"), "teacher": TeacherConfig(specs=("mlp",))},
        "teacher.specs",
        ["--method=ca_mkd", "--teachers=mlp"],
        "needs at least 2 teachers",
    ),
    "cache_with_feature_method": (
        {"method": MethodConfig("fitnet"), "cache": CacheConfig(mode="memory")},
        "cache.mode",
        ["--method=fitnet", "--teacher_cache=memory"],
        "--teacher_cache=memory carries only the teacher's logits",
    ),
    "fixed_teaching_with_feature_method": (
        {"method": MethodConfig("fitnet"), "teaching": TeachingConfig(mode="fixed")},
        "teaching.mode",
        ["--method=fitnet", "--teaching=fixed"],
        "--teaching=fixed carries only",
    ),
    "calibration_without_teacher": (
        {"method": MethodConfig("ls"), "calibration": CalibrationConfig(enabled=True)},
        "calibration.enabled",
        ["--method=ls", "--calibrate_teacher"],
        "--calibrate_teacher: --method=ls uses no teacher",
    ),
    "calibration_with_multi_teacher": (
        {"method": AVER, "teacher": TWO, "calibration": CalibrationConfig(enabled=True)},
        "calibration.enabled",
        ["--method=aver", "--teachers=mlp,mlp_small", "--calibrate_teacher"],
        "not --method=aver",
    ),
    "calibration_without_validation": (
        {
            "data": dataclasses.replace(RunConfig().data, validation_fraction=0.0),
            "calibration": CalibrationConfig(enabled=True),
        },
        "calibration.enabled",
        ["--calibrate_teacher", "--validation_fraction=0"],
        "set --validation_fraction > 0",
    ),
    "augment_with_teaching": (
        {"augment": True, "teaching": TeachingConfig(mode="consistent")},
        "augment",
        ["--augment", "--teaching=consistent"],
        "--augment cannot be combined with --teaching",
    ),
    "teaching_with_multi_teacher": (
        {"method": AVER, "teacher": TWO, "teaching": TeachingConfig(mode="consistent")},
        "teaching.mode",
        ["--method=aver", "--teachers=mlp,mlp_small", "--teaching=consistent"],
        "--teaching and --distill_dataset work with single-teacher",
    ),
    "teaching_without_teacher": (
        {"method": MethodConfig("ls"), "teaching": TeachingConfig(mode="consistent")},
        "teaching.mode",
        ["--method=ls", "--teaching=consistent"],
        "--teaching: method 'ls' uses no teacher",
    ),
    "out_of_domain_without_teacher": (
        {"method": MethodConfig("ls"), "teaching": TeachingConfig(distill_dataset="synthetic")},
        "teaching.distill_dataset",
        ["--method=ls", "--distill_dataset=synthetic"],
        "--distill_dataset: method 'ls' uses no teacher",
    ),
    "cache_without_teacher": (
        {"method": MethodConfig("ls"), "cache": CacheConfig(mode="disk")},
        "cache.mode",
        ["--method=ls", "--teacher_cache=disk"],
        "--teacher_cache: method 'ls' uses no teacher",
    ),
    "disk_cache_without_folder": (
        {"cache": CacheConfig(mode="disk", dir="")},
        "cache.dir",
        ["--teacher_cache=disk", "--cache_dir="],
        "--cache_dir: --teacher_cache=disk needs a folder",
    ),
    "replay_with_fixed_teaching": (
        {"cache": CacheConfig(mode="replay"), "teaching": TeachingConfig(mode="fixed")},
        "cache.mode",
        ["--teacher_cache=replay", "--teaching=fixed"],
        "but --teaching=fixed computes them on the clean images",
    ),
    "plain_cache_with_augment": (
        {"cache": CacheConfig(mode="memory"), "augment": True},
        "cache.mode",
        ["--teacher_cache=memory", "--augment"],
        "but --augment draws new views every step; use --teacher_cache=replay",
    ),
    "replay_without_consistent_teaching": (
        {"cache": CacheConfig(mode="replay")},
        "cache.mode",
        ["--teacher_cache=replay"],
        "it needs --teaching=consistent or function_matching",
    ),
}


@pytest.mark.parametrize("case", sorted(CONFLICTS))
def test_run_config_refuses_each_conflict_when_made_naming_the_field(case):
    parts, field, _, _ = CONFLICTS[case]
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as caught:
        RunConfig(**parts)
    assert caught.value.field == field
    assert "--" not in str(caught.value)  # the library names fields, not flags


@pytest.mark.parametrize("case", sorted(name for name, entry in CONFLICTS.items() if entry[3]))
def test_the_command_line_shows_the_flag_of_the_field(case, capsys):
    _, _, args, fragment = CONFLICTS[case]
    with pytest.raises(SystemExit) as caught:
        common.run_tool(distill.main, ["bin/distill", *TINY, *args])
    assert caught.value.code == 2
    stderr = capsys.readouterr().err.strip()
    assert len(stderr.splitlines()) == 1 and stderr.startswith("distill: error: ")
    assert fragment in stderr, stderr


def test_replace_needs_a_temperature_option():
    """A teacher method without a temperature cannot take T* as its temperature."""
    plain = methods.Method(
        build=lambda student, teacher, data, options: student, options=(methods.ALPHA,)
    )
    with methods.METHODS.temporary("plain_teacher_method", plain):
        RunConfig(
            method=MethodConfig("plain_teacher_method"),
            calibration=CalibrationConfig(enabled=True, mode="scale"),
        )
        with pytest.raises(ConfigError, match="has no method.options.temperature") as caught:
            RunConfig(
                method=MethodConfig("plain_teacher_method"),
                calibration=CalibrationConfig(enabled=True, mode="replace"),
            )
    assert caught.value.field == "calibration.mode"
    assert caught.value.render(COMMAND_LINE.flag_name).startswith(
        "--calibration_mode=replace sets the distillation temperature"
    )


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--warmup_epochs=1", "--epochs=1"], "--warmup_epochs must be in [0, --epochs), got 1.0"),
        (["--teacher_epochs=0"], "--teacher_epochs must be an integer >= 1, got 0"),
        (["--replay_views=0"], "--replay_views must be an integer >= 1, got 0"),
        (["--validation_fraction=1"], "--validation_fraction must be in [0, 1), got 1.0"),
        (["--pacing_start=0"], "--pacing_start must be in (0, 1], got 0.0"),
    ],
)
def test_a_field_out_of_range_is_named_by_its_flag(args, fragment):
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_flags([*TINY, *args])
    assert fragment in str(caught.value)


def test_a_nested_field_is_named_from_the_top():
    with pytest.raises(ConfigError, match=r"^epochs must be an integer >= 1") as caught:
        dataclasses.replace(RunConfig().schedule, epochs=0)
    error = caught.value.within("schedule")
    assert error.field == "schedule.epochs"
    assert str(error).startswith("schedule.epochs must be")
    assert error.render(COMMAND_LINE.flag_name).startswith("--epochs must be")


def test_every_bin_distill_flag_is_declared():
    """The flags of bin/distill before the declarations moved into the config, and since."""
    names = {row.flag for row in COMMAND_LINE.rows()}
    before = {
        "dataset",
        "data_dir",
        "validation_fraction",
        "train_limit",
        "test_limit",
        "seed",
        "augment",
        "distill_dataset",
        "synthetic_size",
        "synthetic_dim",
        "synthetic_classes",
        "synthetic_superclasses",
        "class_similarity",
        "difficulty",
        "teacher",
        "teachers",
        "teacher_epochs",
        "teacher_input_scale",
        "student",
        "teacher_cache",
        "cache_dir",
        "replay_views",
        "replay_topk",
        "teacher_precision",
        "method",
        "teaching",
        "mixup_alpha",
        "mixup_partners",
        "crop_min_scale",
        "teaching_flip",
        "curriculum",
        "pacing",
        "pacing_start",
        "pacing_epochs",
        "calibrate_teacher",
        "calibration_mode",
        "calibration_bins",
        "epochs",
        "batch_size",
        "optimizer",
        "learning_rate",
        "lr_schedule",
        "warmup_epochs",
        "weight_decay",
        "precision",
        "strategy",
        "tpu",
        "deterministic",
        "output_dir",
        "overwrite",
        "export",
        "baseline",
        "test_every",
        "verbose",
        *methods.all_options(),
    }
    assert before <= names
    assert len(names) == len(COMMAND_LINE.rows())  # one flag per field


def test_resume_keys_come_from_the_roles():
    config = RunConfig.from_flags([*TINY, "--output_dir=/tmp/x", "--temperature=2"])
    record = config.flag_values()
    assert {"output_dir", "verbose", "overwrite", "cache_dir", "export", "baseline"} <= set(record)
    run = config.settings("run")
    assert not {"output_dir", "verbose", "overwrite", "cache_dir"} & set(run)
    assert {"export", "baseline", "temperature", "epochs", "student"} <= set(run)
    search = config.settings("search")
    assert set(search) == set(run) - {"export", "baseline"}
    teachers = config.settings("teachers")
    assert {
        "teacher",
        "teacher_epochs",
        "batch_size",
        "learning_rate",
        "dataset",
        "seed",
        "augment",
        "deterministic",
    } <= set(teachers)
    assert not {
        "student",
        "epochs",
        "method",
        "temperature",
        "teacher_cache",
        "distill_dataset",
    } & set(teachers)
    changed = dataclasses.replace(config, output=dataclasses.replace(config.output, verbose=1))
    assert settings.changed(config.settings("run"), changed.settings("run")) == []
    other = dataclasses.replace(config, student="mlp")
    assert settings.changed(config.settings("run"), other.settings("run")) == ["student"]


@pytest.mark.parametrize(
    "value,declared,expected",
    [
        (0.5, {"minimum": 0, "maximum": 1}, None),
        (1.0, {"minimum": 0, "maximum": 1, "open_maximum": True}, "must be in [0, 1), got 1.0"),
        (0, {"minimum": 0, "open_minimum": True, "integer": True}, "must be an integer > 0, got 0"),
        ("x", {"minimum": 0}, "must be a number >= 0, got 'x'"),
        (True, {"minimum": 0}, "must be a number >= 0, got True"),
        ("c", {"choices": ("a", "b")}, "must be one of a, b, got 'c'"),
        (float("nan"), {"minimum": 0}, "must be a number >= 0, got nan"),
    ],
)
def test_check_value(value, declared, expected):
    assert settings.check_value(value, **declared) == expected
