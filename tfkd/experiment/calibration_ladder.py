"""`run_ladder(config, teachers, modes, seeds)`: the teacher ladder of "Rethinking knowledge
distillation from the perspective of model calibration" (its Tables 1-3), the job `bin/ladder`
runs.

For each teacher (an architecture trained here once, or a saved model loaded): test accuracy,
T* fitted on the validation split, ECE and NLL on the test split before and after temperature
scaling; then the same student distilled from it uncalibrated ("none") and under each of `modes`
("scale": the teacher's logits divided by T*; "replace": the distillation temperature set to T*),
`seeds` students each. Every student goes through `tfkd.experiment.distillation.distill`, the code path of
`tfkd.experiment.run`, so every `RunConfig` setting (method options, --teaching, --curriculum,
--distill_dataset, --test_every, the schedule, ...) applies to it as it would to one
`bin/distill` run.

Seeds. The data are loaded once, with `config.seed`: the splits, hence the validation split T* is
fitted on and the test split every accuracy is measured on, are the same for every cell. Student
k is distilled with a copy of `config` whose `data.seed` is `config.seed + k`, which that copy
only uses for what `tfkd.experiment.distillation.distill` seeds with it: the student's initialisation, the batch order
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
from typing import Any

import numpy as np

from tfkd import atomic, data
from tfkd.calibration import CALIBRATION_MODES
from tfkd.experiment import (
    distillation,
    fitting,
    ladder_report,
    preflight,
    report,
    teacher_calibration,
    teacher_setup,
)
from tfkd.experiment.ladder_config import (
    FLAG,
    UNCALIBRATED,
    LadderConfig,
    check,
    default_output_dir,
    distill_args,
    flag_values,
    ladder_args,
    teacher_name,
)
from tfkd.experiment.teacher_outputs import TeachingRun
from tfkd.experiment.workdir import PHASES_FILE, WorkDir, disk_error


@dataclasses.dataclass(frozen=True)
class Ladder:
    """What every cell of a running ladder shares: its config and method, the student seeds,
    the data, the strategy, the ladder's WorkDir and the run's teaching settings."""

    config: Any
    method: Any
    seeds: tuple
    bundle: Any
    strategy: Any
    work: Any
    teaching_run: Any


def student_config(config, seed):
    """`config` with `seed` for what `distillation.distill` seeds: initialisation and batch
    order."""
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
    settings = LadderConfig(config, teachers, modes, seeds)
    teachers, modes, seeds = list(settings.teachers), list(settings.modes), settings.seeds
    method = check(settings)
    if command is None:
        command = " ".join(
            ["bin/ladder", *distill_args(config), *ladder_args(teachers, modes, seeds)]
        )
    strategy = fitting.make_strategy(config)
    fitting.set_determinism(config)
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
        preflight.dry_build(
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
    student_seeds = tuple(config.seed + k for k in range(seeds))
    ladder = Ladder(config, method, student_seeds, bundle, strategy, work, teaching_run)
    try:
        return _run_ladder(ladder, teachers, modes, command)
    except OSError as error:
        raise disk_error(error, work.path) from None


def _run_ladder(ladder, teachers, modes, command):
    config, work, bundle = ladder.config, ladder.work, ladder.bundle
    modes = [UNCALIBRATED, *modes]
    results = {
        "dataset": config.data.dataset,
        "method": config.method.name,
        "student": config.student,
        "options": ladder.teaching_run.options,
        "modes": modes,
        "seeds": len(ladder.seeds),
        "student_seeds": list(ladder.seeds),
        "sizes": {
            split: int(len(getattr(bundle, split)[1])) for split in ("train", "validation", "test")
        },
        "command": command,
        "rows": [],
    }
    if config.output.baseline:
        results["baseline"] = summarise([baseline(ladder, seed) for seed in ladder.seeds])
    for spec in teachers:
        results["rows"].append(teacher_row(ladder, spec, modes))
        if work.write:  # the ladder so far, readable in the .partial folder
            ladder_report.write(results, work.path)
    results["flags"] = flag_values(config, teachers, modes[1:], len(ladder.seeds))
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


def baseline(ladder, seed):
    """The test accuracy of the student trained alone with seed `seed` (once)."""
    work, bundle = ladder.work, ladder.bundle
    phase = f"baseline/seed_{seed}"
    record = work.done(phase)
    if record is None:
        model, seconds = distillation.baseline(
            student_config(ladder.config, seed), bundle, ladder.strategy, cell_workdir(work, phase)
        )
        record = {"accuracy": fitting.accuracy(model, bundle.test), "seconds": seconds}
        work.finish(phase, record)
    keep_model(work, phase, "baseline.keras")
    return record["accuracy"]


def teacher_row(ladder, spec, modes):
    """One ladder row: the teacher's calibration, then its students under every mode."""
    config, work, bundle, strategy = ladder.config, ladder.work, ladder.bundle, ladder.strategy
    name = teacher_name(spec)
    start = time.time()
    teacher, _, trained = teacher_setup.get_teacher(
        spec, f"teachers/{name}", FLAG, config, bundle, strategy, work, config.seed
    )
    summary = work.done(f"calibration/{name}")
    if summary is None:
        diagrams = work.file("reliability", name)
        if work.write:
            os.makedirs(diagrams, exist_ok=True)
        summary = teacher_calibration.measure_calibration(
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
    for mode in modes:
        cells = [
            student(ladder, f"students/{name}/{mode}/seed_{seed}", mode, summary, teacher, seed)
            for seed in ladder.seeds
        ]
        row["student"][mode] = {
            **summarise([cell["accuracy"] for cell in cells]),
            "seeds": list(ladder.seeds),
            "teaching": [cell["teaching"] for cell in cells],
        }
        row["seconds"][mode] = float(sum(cell["seconds"] for cell in cells))
        print(
            f"  {name} -> {config.student} ({mode}): {row['student'][mode]['mean']:.4f}", flush=True
        )
    return row


def student(ladder, phase, mode, calibration, teacher, seed):
    """One cell: the student of `seed` distilled from `teacher` under `mode` (`UNCALIBRATED`
    or a calibration mode, with the teacher's `calibration` summary) once; returns its record
    {seed, accuracy, teaching, seconds}."""
    work, bundle = ladder.work, ladder.bundle
    record = work.done(phase)
    if record is None:
        start = time.time()
        seeded = teaching_for_seed(ladder.teaching_run, seed)
        options = dict(seeded.options)
        if mode != UNCALIBRATED:
            teacher, options = teacher_calibration.calibrated_teacher(
                teacher, options, ladder.method, mode, calibration["temperature"], ladder.strategy
            )
        model, _ = distillation.distill(
            ladder.method,
            student_config(ladder.config, seed),
            options,
            teacher,
            seeded.distill_bundle(bundle, teacher),
            ladder.strategy,
            cell_workdir(work, phase),
            seeded,
        )
        record = {
            "seed": seed,
            "accuracy": fitting.accuracy(model, bundle.test),
            "teaching": {**seeded.summary(), "options": options},
            "seconds": time.time() - start,
        }
        work.finish(phase, record)
    keep_model(work, phase, "student.keras")
    return record
