"""The whole distillation job from Python: `run(RunConfig.from_flags([...]))`.

Besides `run`, the steps it is made of, for tools built on it (`tfkd.tuning`): `check` and
`check_run` (what a run refuses before its first phase), `set_determinism` and `make_strategy`,
`get_teacher` (a teacher loaded, or trained once in a `WorkDir`), `baseline` (the student
alone), `accuracy`, `print_summary`, and `WorkDir` (a resumable folder; `refuse_other_settings`
decides "same settings, so resume?" and `announce_reuse` says a finished output is reused).
"""

from tfkd.experiment.config import (
    CalibrationConfig,
    CurriculumConfig,
    MethodConfig,
    OutputConfig,
    RunConfig,
    TeacherConfig,
    TeachingConfig,
)
from tfkd.experiment.distillation import baseline
from tfkd.experiment.fitting import accuracy, make_strategy, set_determinism
from tfkd.experiment.job import check, check_run, default_output_dir, run
from tfkd.experiment.report import print_summary
from tfkd.experiment.teacher_setup import get_teacher, is_model_path
from tfkd.experiment.workdir import WorkDir, announce_reuse, refuse_other_settings

__all__ = [
    "CalibrationConfig",
    "CurriculumConfig",
    "MethodConfig",
    "OutputConfig",
    "RunConfig",
    "TeacherConfig",
    "TeachingConfig",
    "WorkDir",
    "accuracy",
    "announce_reuse",
    "baseline",
    "check",
    "check_run",
    "default_output_dir",
    "get_teacher",
    "is_model_path",
    "make_strategy",
    "print_summary",
    "refuse_other_settings",
    "run",
    "set_determinism",
]
