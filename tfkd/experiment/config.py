"""`RunConfig`: everything one distillation run takes, as frozen data.

    config = RunConfig.from_flags(["--flagfile=configs/synthetic.flags", "--epochs=3"])
    variant = dataclasses.replace(config, student="mlp_small")
    results = tfkd.experiment.run(variant)

Every `bin/distill` flag has one field here (`tfkd.cli.flags` holds the mapping); method options
are the ones given explicitly, the rest take the method's declared defaults when the run starts.
"""
import dataclasses
from typing import Optional

from tfkd import calibration, export
from tfkd.data import DataConfig
from tfkd.training import TrainConfig


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
    """The teacher: `spec` is a .keras file, a SavedModel folder or an architecture to train for
    `epochs`; multi-teacher methods read `specs` instead. `input_scale` multiplies the [0, 1]
    inputs of a loaded teacher (255 for one trained on raw pixels)."""
    spec: str = "resnet20"
    specs: tuple = ()
    epochs: int = 10
    input_scale: float = 1.0
    precision: str = "float32"


@dataclasses.dataclass(frozen=True)
class CacheConfig:
    """How the teacher's outputs reach the training batches (`tfkd.cache`, `tfkd.replay`).

    `mode` "none": the teacher runs on every batch; "memory" or "disk": its outputs on the
    un-augmented training inputs are computed once and carried with the batches (disk: in
    `dir`, shared by every run with the same teachers, data and preprocessing); "replay":
    `replay_views` augmented views per image are drawn once and the teacher's top
    `replay_topk` probabilities on each are stored in `dir` and replayed."""
    mode: str = "none"
    dir: str = "savedmodels/cache"
    replay_views: int = 4
    replay_topk: int = 5


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """A registered method and the options given for it (the others keep their defaults)."""
    name: str = "kd"
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class TeachingConfig:
    """What teacher and student see of a batch (`tfkd.teaching`), and out-of-domain data."""
    mode: str = "none"
    mixup_alpha: float = 1.0
    mixup_partners: str = "permutation"
    crop_min_scale: float = 0.08
    flip: bool = True
    distill_dataset: Optional[str] = None
    test_every: int = 0


@dataclasses.dataclass(frozen=True)
class CurriculumConfig:
    """Training order (`tfkd.curriculum`) and its pacing."""
    order: str = "none"
    pacing: str = "none"
    pacing_start: float = 0.2
    pacing_epochs: int = 5


@dataclasses.dataclass(frozen=True)
class CalibrationConfig:
    """Temperature-scale the teacher on the validation split before distilling. `mode`
    "scale" (the default) distills from logits / T* at the method's T, "replace" at T = T*
    (docs/calibration/converged compares them)."""
    enabled: bool = False
    mode: str = "scale"
    bins: int = calibration.DEFAULT_BINS


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    """Where and what the run writes. `dir` None: savedmodels/<dataset>-<method>-<student>-<time>.
    `evaluate_test` False: the test split is never read (no test accuracies; exports are not
    measured on it), as in a hyperparameter-search trial; it has no flag."""
    dir: Optional[str] = None
    overwrite: bool = False
    export: tuple = export.DEFAULT_FORMATS
    baseline: bool = False
    verbose: int = 2
    evaluate_test: bool = True


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One distillation run: data -> teacher(s) -> calibration -> distillation -> baseline ->
    evaluation -> export. `deterministic` seeds everything and enables op determinism, so two
    runs (or an interrupted and resumed one) give identical weights."""
    data: DataConfig = dataclasses.field(default_factory=lambda: DataConfig("synthetic"))
    teacher: TeacherConfig = TeacherConfig()
    student: str = "resnet8"
    method: MethodConfig = MethodConfig()
    teaching: TeachingConfig = TeachingConfig()
    cache: CacheConfig = CacheConfig()
    curriculum: CurriculumConfig = CurriculumConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    schedule: TrainConfig = TrainConfig()
    augment: bool = False
    strategy: str = "default"
    tpu: Optional[str] = None
    deterministic: bool = False
    output: OutputConfig = OutputConfig()

    @property
    def seed(self):
        return self.data.seed

    @classmethod
    def from_flags(cls, args):
        """Parses command-line strings (`--flagfile=` included) into a config.

        Uses its own flag registry, so it can be called any number of times in one process and
        leaves absl's global flags alone. Raises ValueError naming the flag on bad input.
        """
        from tfkd.cli import flags  # the flag table lives with the command-line tools
        return flags.to_config(flags.parse(args))

    def to_flags(self):
        """The command-line strings that `from_flags` turns back into this config."""
        from tfkd.cli import flags
        return flags.to_args(self)

    def teacher_schedule(self):
        """The schedule of a teacher trained here: the run's, for `teacher.epochs` epochs."""
        return dataclasses.replace(self.schedule, epochs=self.teacher.epochs,
                                   warmup_epochs=min(self.schedule.warmup_epochs,
                                                     self.teacher.epochs - 1))
