"""`run(config)`: the whole distillation job, the one `bin/distill` runs.

teacher(s) -> calibration -> distillation -> baseline -> evaluation -> export, in
`<output_dir>.partial/` until everything succeeded. A re-run of the same config after a crash
loads the finished phases and resumes the interrupted one from its last completed epoch.
"""

import os
import time

from tfkd import data, methods
from tfkd.data import language_modeling as lm_data
from tfkd.experiment import (
    distillation,
    fitting,
    preflight,
    report,
    run_report,
    teacher_calibration,
    teacher_setup,
)
from tfkd.experiment.config import RunConfig
from tfkd.experiment.teacher_outputs import TeachingRun
from tfkd.experiment.workdir import WorkDir, disk_error
from tfkd.exporting import student as export
from tfkd.lm import run as lm_run
from tfkd.models import gpt
from tfkd.settings import ConfigError
from tfkd.teacher import loading


def default_output_dir(config):
    """savedmodels/<dataset>-<method>-<student>-<time>: where a run writes without
    `output.dir`."""
    name = config.data.dataset.replace(":", "_").replace("/", "_").strip("_")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join("savedmodels", f"{name}-{config.method.name}-{config.student}-{stamp}")


def resume_key(config):
    """The settings a resumed run must share with the run it continues: {flag: value}."""
    return config.settings("run")


def check(config):
    """What a config cannot know about itself: every teacher file exists and every teacher
    architecture is known (`RunConfig` refused conflicting options when it was made). Returns
    the registered Method; ConfigError naming the field."""
    method = methods.METHODS.get(config.method.name)
    if method.multi_teacher:
        specs = [("teacher.specs", spec) for spec in config.teacher.specs]
    else:
        specs = [("teacher.spec", config.teacher.spec)] if method.needs_teacher else []
    if lm_data.is_language_model_data(config.data.dataset):  # the causal-LM zoo is built here
        specs = [(field, spec) for field, spec in specs if spec not in gpt.CAUSAL_LMS]
    for field, spec in specs:
        try:
            teacher_setup.check_teacher_spec(spec, f"`{field}`")
        except ValueError as error:
            raise ConfigError(field, str(error)) from None
    return method


def check_run(config, bundle):
    """What `run(config)` checks before its first phase, on the loaded data set `bundle`: the
    teacher files and architectures (`check`), the teaching settings, and the method built with
    its resolved options on untrained (or loaded) models (`preflight.dry_build`). Returns the
    registered Method and its resolved options (the given values, the declared defaults, and
    what the teaching settings change)."""
    method = check(config)
    options = TeachingRun(
        config, method, method.resolve(config.method.options, config.method.name), bundle
    ).options
    preflight.dry_build(method, config, options, bundle)
    return method, options


def run(config: RunConfig) -> dict:
    """Runs the whole job; returns the results dictionary (also written as results.json)."""
    method = check(config)
    output_dir = config.output.dir or default_output_dir(config)
    strategy = fitting.make_strategy(config)
    work = WorkDir(
        output_dir, resume_key(config), config.output.overwrite, write=report.is_chief(strategy)
    )
    try:
        work.open()
        if lm_data.is_language_model_data(config.data.dataset):
            fitting.set_determinism(config)
            return lm_run.run(config, strategy, work)
        return _run(config, method, strategy, work)
    except OSError as error:
        work.discard_if_empty()
        raise disk_error(error, work.path) from None
    except BaseException:
        work.discard_if_empty()
        raise


def _run(config, method, strategy, work):
    fitting.set_determinism(config)
    bundle = data.load(config.data)
    if bundle.is_text and work.write:  # beside teacher.keras and student.keras
        bundle.tokenizer.save(work.path)
    teaching_run = TeachingRun(
        config, method, method.resolve(config.method.options, config.method.name), bundle
    )
    options = teaching_run.options
    preflight.dry_build(method, config, options, bundle, teaching_run)
    seconds = {}
    teacher, teacher_spec = None, None
    if method.multi_teacher:
        got = [
            teacher_setup.get_teacher(
                spec, f"teacher_{k}", "--teachers", config, bundle, strategy, work, config.seed + k
            )
            for k, spec in enumerate(config.teacher.specs)
        ]
        teacher, teacher_spec = [g[0] for g in got], [g[1] for g in got]
        seconds.update({f"teacher_{k}": g[2] for k, g in enumerate(got) if g[2] is not None})
    elif method.needs_teacher:
        teacher, teacher_spec, trained = teacher_setup.get_teacher(
            config.teacher.spec, "teacher", "--teacher", config, bundle, strategy, work, config.seed
        )
        if trained is not None:
            seconds["teacher"] = trained
    teacher, options, calibration = teacher_calibration.calibrate(
        teacher, config, options, bundle, strategy, work
    )
    start = time.time()
    distill_bundle = teaching_run.distill_bundle(bundle, teacher)
    student, _ = distillation.distill(
        method, config, options, teacher, distill_bundle, strategy, work, teaching_run
    )
    seconds["distill"] = time.time() - start
    results = {
        "dataset": config.data.dataset,
        "method": config.method.name,
        "teaching": {**teaching_run.summary(), "options": options},
        "teacher_cache": teaching_run.cache_summary(work),
    }
    serving = teaching_run.serving_summary(work)
    if serving is not None:
        results["teacher_serving"] = serving

    def on_test(model):  # nothing when the test split must not be read (a search trial)
        return (
            {"accuracy": fitting.accuracy(model, bundle.test)}
            if config.output.evaluate_test
            else {}
        )

    if method.multi_teacher and config.output.evaluate_test:
        results.update(
            report.multi_teacher_results(
                teacher, teacher_spec, bundle, config.method.name, options, work
            )
        )
    elif teacher is not None and not method.multi_teacher:
        results["teacher"] = {
            "arch": teacher_spec,
            **on_test(teacher),
            "params": int(teacher.count_params()),
        }
    if calibration is not None:
        results["calibration"] = calibration
    results["student"] = {
        "arch": config.student,
        **on_test(student),
        "val_accuracy": fitting.accuracy(student, bundle.validation),
        "params": int(student.count_params()),
    }
    if config.output.baseline:
        alone, seconds["baseline"] = distillation.baseline(config, bundle, strategy, work)
        results["baseline"] = {
            **on_test(alone),
            "val_accuracy": fitting.accuracy(alone, bundle.validation),
        }
    if work.write:
        # Exported from a copy outside the strategy: under MultiWorkerMirroredStrategy the
        # student's own predict is a collective call that the other workers do not join.
        results["exports"] = export.export_student(
            loading.load_model(work.file("checkpoints", "student.keras"), "student"),
            work.path,
            config.output.export,
            test_data=bundle.test if config.output.evaluate_test else None,
            train_images=bundle.train[0],
            tokenizer=bundle.tokenizer,
            # A killed export's files are replaced.
            settings=export.ExportSettings(verbose=config.output.verbose > 0, overwrite=True),
        )
    results["flags"] = {**config.flag_values(), **options}
    results["deterministic"] = config.deterministic
    results["resumed"] = work.resumed
    results["seconds"] = seconds
    if work.write:
        run_report.write(work.path, results)
    work.commit(results)
    if config.output.evaluate_test:
        report.print_summary(results, work.output_dir)
        print(run_report.summary_line(results, work.output_dir), flush=True)
    return results
