"""The whole distillation job from Python: `run(RunConfig.from_flags([...]))`."""

from tfkd.experiment.config import (
    CalibrationConfig,
    CurriculumConfig,
    MethodConfig,
    OutputConfig,
    RunConfig,
    TeacherConfig,
    TeachingConfig,
)
from tfkd.experiment.job import run

__all__ = [
    "CalibrationConfig",
    "CurriculumConfig",
    "MethodConfig",
    "OutputConfig",
    "RunConfig",
    "TeacherConfig",
    "TeachingConfig",
    "run",
]
