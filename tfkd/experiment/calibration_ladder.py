"""`run_ladder(config, teachers, modes, seeds)`: the teacher ladder of "Rethinking knowledge
distillation from the perspective of model calibration" (its Tables 1-3), the job `bin/ladder`
runs.

For each teacher (an architecture trained here once, or a saved model loaded): test accuracy,
T* fitted on the validation split, ECE and NLL on the test split before and after temperature
scaling; then the same student distilled from it uncalibrated ("none") and under each of `modes`
("scale": the teacher's logits divided by T*; "replace": the distillation temperature set to T*),
`seeds` students each. Every student goes through `phases.distill`, the code path of
`tfkd.experiment.run`, so every `RunConfig` setting (method options, --teaching, --curriculum,
--distill_dataset, --test_every, the schedule, ...) applies to it as it would to one
`bin/distill` run.

Seeds. The data are loaded once, with `config.seed`: the splits, hence the validation split T* is
fitted on and the test split every accuracy is measured on, are the same for every cell. Student
k is distilled with a copy of `config` whose `data.seed` is `config.seed + k`, which that copy
only uses for what `phases.distill` seeds with it: the student's initialisation, the batch order
(and curriculum pacing), and the --teaching augmentation. The student with k = 0 is therefore
the one `tfkd.experiment.run` distills with `--teacher=<that teacher>` and, for "scale" and
"replace", `--calibrate_teacher --calibration_mode=<mode>`.

Outputs, in `<output_dir>.partial/` until every cell finished (a killed ladder re-run with the
same settings skips finished teachers and students and resumes the interrupted one from its last
epoch): ladder.json (also as results.json), ladder.md, ladder.png, teachers/<name>.keras
(reusable as teachers), reliability/<teacher>/reliability_{before,after}.png, and per student
students/<teacher>/<mode>/seed_<seed>/ with student.keras, history.csv and logs/ (baseline/
likewise with --baseline).
"""

import copy
import dataclasses
import os
import shutil
import time

import numpy as np

from tfkd import atomic, calibration, data, methods
from tfkd.experiment import ladder_report, phases, report
from tfkd.experiment.config import RunConfig
from tfkd.experiment.teaching_run import TeachingRun
from tfkd.experiment.workdir import PHASES_FILE, WorkDir, disk_error
from tfkd.settings import ConfigError, setting
from tfkd.settings import check as check_fields
from tfkd.targets import CALIBRATION_MODES

UNCALIBRATED = "none"
FLAG = "--ladder_teachers"  # names the teachers in load errors
# bin/distill flags the ladder sets itself: left out of its record and of its resume key.
SET_BY_LADDER = ("teacher", "teachers", "calibrate_teacher", "calibration_mode")


def teacher_name(spec):
    """The row name of a teacher: an architecture's name, or a model path's file name."""
    if not phases.is_model_path(spec):
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
            phases.check_teacher_spec(spec, "`teachers`")
        except ValueError as error:
            raise ConfigError("teachers", str(error)) from None
    return methods.METHODS.get(ladder.run.method.name)


def default_output_dir(config):
    return os.path.join("savedmodels", f"ladder-{config.student}-{time.strftime('%Y%m%d-%H%M%S')}")


def student_config(config, seed):
    """`config` with `seed` for what `phases.distill` seeds: initialisation and batch order."""
    return dataclasses.replace(config, data=dataclasses.replace(config.data, seed=seed))


def teaching_for_seed(teaching_run, seed):
    """A copy of `teaching_run` whose --teaching augmentation draws from `seed`; the
    out-of-domain images (loaded once, with --seed) are shared."""
    seeded = copy.copy(teaching_run)
    if seeded.teaching is not None:
        seeded.teaching = dataclasses.replace(seeded.teaching, seed=seed)
    return seeded


def summarise(accuracies):
    """Mean and sample standard deviation (0 for one seed) of the students' test accuracies."""
    spread = float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0
    return {"accuracies": list(accuracies), "mean": float(np.mean(accuracies)), "std": spread}


def cell_workdir(work, phase):
    """The WorkDir of one ladder cell: its own phases.json, checkpoints/ and logs/ in the
    ladder's folder at `phase` (no .partial sibling: the ladder's folder is the partial one)."""
    cell = WorkDir(work.file(phase), work.args, flag=work.flag, write=work.write)
    cell.path = cell.output_dir
    cell.resumed = work.resumed
    if cell.write:
        os.makedirs(cell.path, exist_ok=True)
    return cell


def keep_model(work, phase, name):
    """Moves the cell's finished `checkpoints/<name>` up into the cell folder and drops the
    per-epoch checkpoints (the ladder's record of the cell is what a re-run reads)."""
    folder = work.file(phase)
    saved = os.path.join(folder, "checkpoints", name)
    if os.path.exists(saved):
        atomic.replace(saved, os.path.join(folder, "student.keras"))
    shutil.rmtree(os.path.join(folder, "checkpoints"), ignore_errors=True)
    if os.path.exists(os.path.join(folder, PHASES_FILE)):
        os.remove(os.path.join(folder, PHASES_FILE))


def run_ladder(config, teachers, modes=CALIBRATION_MODES, seeds=1, command=None):
    """Runs the whole ladder; returns the results dictionary (also written as ladder.json).

    Args:
      config: the RunConfig of every student and of the teachers trained here
        (`teacher.epochs`, `teacher.input_scale` and `calibration.bins` apply; `teacher.spec`,
        `teacher.specs` and `calibration.mode` do not, and `calibration.enabled` is refused).
      teachers: architectures to train or model paths, smallest first.
      modes: calibration modes distilled besides the uncalibrated teacher ("scale", "replace").
      seeds: students per (teacher, mode), with seeds config.seed, config.seed + 1, ...
      command: the command line recorded in ladder.md (default: the flags of these settings).
    """
    ladder = LadderConfig(config, teachers, modes, seeds)
    teachers, modes, seeds = list(ladder.teachers), list(ladder.modes), ladder.seeds
    method = check(ladder)
    if command is None:
        command = " ".join(
            ["bin/ladder", *distill_args(config), *ladder_args(teachers, modes, seeds)]
        )
    strategy = phases.make_strategy(config)
    phases.set_determinism(config)
    # Data, teaching and models are checked before the folder exists: bad input leaves none.
    bundle = data.load(config.data)
    if not len(bundle.validation[1]):
        raise ValueError(
            "the ladder fits T* on the validation split, which is empty; set a "
            "larger --validation_fraction"
        )
    teaching_run = TeachingRun(
        config, method, method.resolve(config.method.options, config.method.name), bundle
    )
    for spec in teachers:  # as bin/distill does: options, class counts, input shapes
        phases.dry_build(
            method,
            dataclasses.replace(config, teacher=dataclasses.replace(config.teacher, spec=spec)),
            teaching_run.options,
            bundle,
        )
    resume_key = flag_values(config, teachers, modes, seeds, scope="run")
    work = WorkDir(
        config.output.dir or default_output_dir(config),
        resume_key,
        config.output.overwrite,
        write=report.is_chief(strategy),
    ).open()
    try:
        return _run_ladder(
            config, method, teachers, modes, seeds, command, strategy, work, bundle, teaching_run
        )
    except OSError as error:
        raise disk_error(error, work.path) from None


def _run_ladder(
    config, method, teachers, modes, seeds, command, strategy, work, bundle, teaching_run
):
    student_seeds = [config.seed + k for k in range(seeds)]
    modes = [UNCALIBRATED, *modes]
    results = {
        "dataset": config.data.dataset,
        "method": config.method.name,
        "student": config.student,
        "options": teaching_run.options,
        "modes": modes,
        "seeds": seeds,
        "student_seeds": student_seeds,
        "sizes": {
            split: int(len(getattr(bundle, split)[1])) for split in ("train", "validation", "test")
        },
        "command": command,
        "rows": [],
    }
    if config.output.baseline:
        results["baseline"] = summarise(
            [baseline(config, seed, bundle, strategy, work) for seed in student_seeds]
        )
    for spec in teachers:
        results["rows"].append(
            teacher_row(
                spec, config, method, modes, student_seeds, bundle, strategy, work, teaching_run
            )
        )
        if work.write:  # the ladder so far, readable in the .partial folder
            ladder_report.write(results, work.path)
    results["flags"] = flag_values(config, teachers, modes[1:], seeds)
    results["deterministic"] = config.deterministic
    results["resumed"] = work.resumed
    if work.write:
        ladder_report.write(results, work.path)
    work.commit(results)
    print(ladder_report.markdown_table(results))
    print(
        f"\n  output   {work.output_dir}: ladder.json, ladder.md, ladder.png, teachers/, "
        "reliability/, students/",
        flush=True,
    )
    return results


def baseline(config, seed, bundle, strategy, work):
    """The test accuracy of the student trained alone with seed `seed` (once)."""
    phase = f"baseline/seed_{seed}"
    record = work.done(phase)
    if record is None:
        model, seconds = phases.baseline(
            student_config(config, seed), bundle, strategy, cell_workdir(work, phase)
        )
        record = {"accuracy": phases.accuracy(model, bundle.test), "seconds": seconds}
        work.finish(phase, record)
    keep_model(work, phase, "baseline.keras")
    return record["accuracy"]


def teacher_row(spec, config, method, modes, seeds, bundle, strategy, work, teaching_run):
    """One ladder row: the teacher's calibration, then its students under every mode."""
    name = teacher_name(spec)
    start = time.time()
    teacher, _, trained = phases.get_teacher(
        spec, f"teachers/{name}", FLAG, config, bundle, strategy, work, config.seed
    )
    summary = work.done(f"calibration/{name}")
    if summary is None:
        diagrams = work.file("reliability", name)
        if work.write:
            os.makedirs(diagrams, exist_ok=True)
        summary = phases.measure_calibration(
            teacher, bundle, diagrams if work.write else None, config.calibration.bins, name
        )
        work.finish(f"calibration/{name}", summary)
    row = {
        "teacher": name,
        "spec": spec,
        "params": int(teacher.count_params()),
        **summary,
        "student": {},
        "seconds": {"teacher": (trained or 0.0) + time.time() - start},
    }
    print(
        f"  {name}: accuracy {summary['accuracy']:.4f}  T* {summary['temperature']:.3f}  "
        f"ECE {summary['ece_before']:.4f} -> {summary['ece_after']:.4f}",
        flush=True,
    )
    temperature = summary["temperature"]
    for mode in modes:
        distill_from = teacher
        if mode == "scale":
            with strategy.scope():
                distill_from = calibration.calibrate_model(teacher, temperature)
        cells = [
            student(
                f"students/{name}/{mode}/seed_{seed}",
                mode,
                temperature,
                seed,
                distill_from,
                config,
                method,
                bundle,
                strategy,
                work,
                teaching_run,
            )
            for seed in seeds
        ]
        row["student"][mode] = {
            **summarise([cell["accuracy"] for cell in cells]),
            "seeds": list(seeds),
            "teaching": [cell["teaching"] for cell in cells],
        }
        row["seconds"][mode] = float(sum(cell["seconds"] for cell in cells))
        print(
            f"  {name} -> {config.student} ({mode}): {row['student'][mode]['mean']:.4f}", flush=True
        )
    return row


def student(
    phase, mode, temperature, seed, teacher, config, method, bundle, strategy, work, teaching_run
):
    """One cell: the student of `seed` distilled from `teacher` under `mode` (once); returns
    its record {seed, accuracy, teaching, seconds}."""
    record = work.done(phase)
    if record is None:
        start = time.time()
        seeded = teaching_for_seed(teaching_run, seed)
        options = dict(seeded.options)
        if mode == "replace":
            options["temperature"] = temperature
        model, _ = phases.distill(
            method,
            student_config(config, seed),
            options,
            teacher,
            seeded.distill_bundle(bundle, teacher),
            strategy,
            cell_workdir(work, phase),
            seeded,
        )
        record = {
            "seed": seed,
            "accuracy": phases.accuracy(model, bundle.test),
            "teaching": {**seeded.summary(), "options": options},
            "seconds": time.time() - start,
        }
        work.finish(phase, record)
    keep_model(work, phase, "student.keras")
    return record
