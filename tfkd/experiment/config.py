"""`RunConfig`: everything one distillation run takes, as frozen data.

    config = RunConfig.from_flags(["--flagfile=configs/synthetic.flags", "--epochs=3"])
    variant = dataclasses.replace(config, student="mlp_small")
    results = tfkd.experiment.run(variant)

Every field that is a `bin/distill` flag declares it (`tfkd.settings.setting`: flag name, group,
help, choices, range and role); `from_flags`, `to_flags`, `--help`, the resume keys and
results.json's record of settings all come from those declarations (`COMMAND_LINE`). Method
options are the ones given explicitly, the rest take the method's declared defaults when the run
starts.
"""

import dataclasses
from typing import Optional

from tfkd import augment as augmentation
from tfkd import calibration, curriculum, targets, training
from tfkd.data import DataConfig
from tfkd.experiment import validation
from tfkd.experiment.command_line import CommandLine
from tfkd.exporting import student as export
from tfkd.lm.language_model_config import LanguageModelConfig
from tfkd.settings import OUTPUT, REPORT, STUDENT, TEACHER, check, setting
from tfkd.teacher import serving, teaching
from tfkd.training import TrainConfig

NONE = "none"
CACHE_MODES = (NONE, "memory", "disk", "replay")
TEACHING_MODES = (NONE, *teaching.MODES)


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
    """The teacher: `spec` is a .keras file, a SavedModel folder or an architecture to train for
    `epochs`; multi-teacher methods read `specs` instead. `input_scale` multiplies the [0, 1]
    inputs of a loaded teacher (255 for one trained on raw pixels)."""

    spec: str = setting(
        "resnet20",
        flag="teacher",
        group="models",
        role=TEACHER,
        help="A .keras file or SavedModel folder to load, or an architecture to train.",
    )
    specs: tuple = setting(
        (),
        flag="teachers",
        group="models",
        role=TEACHER,
        help="Multi-teacher methods: a comma list, each a .keras file, a SavedModel folder or an "
        "architecture to train (saved as teacher_<k>.keras).",
    )
    epochs: int = setting(
        10,
        flag="teacher_epochs",
        group="models",
        role=TEACHER,
        minimum=1,
        help="Epochs when the teacher is trained here.",
    )
    input_scale: float = setting(
        1.0,
        flag="teacher_input_scale",
        group="models",
        role=TEACHER,
        help="Multiply the [0, 1] inputs by this for a loaded teacher (255 for raw pixels).",
    )
    precision: str = setting(
        "float32",
        flag="teacher_precision",
        group="models",
        choices=serving.PRECISIONS,
        help="Precision of the served teacher (batch norms folded): float32, or bfloat16 "
        "(checked against the float32 teacher's soft targets on validation inputs; a larger "
        "difference than tfkd.teacher.serving.TOLERANCES stops the run).",
    )

    def __post_init__(self):
        check(self)


@dataclasses.dataclass(frozen=True)
class CacheConfig:
    """How the teacher's outputs reach the training batches (`tfkd.teacher.cache`, `tfkd.teacher.replay`).

    `mode` "none": the teacher runs on every batch; "memory" or "disk": its outputs on the
    un-augmented training inputs are computed once and carried with the batches (disk: in
    `dir`, shared by every run with the same teachers, data and preprocessing); "replay":
    `replay_views` augmented views per image are drawn once and the teacher's top
    `replay_topk` probabilities on each are stored in `dir` and replayed."""

    mode: str = setting(
        NONE,
        flag="teacher_cache",
        group="models",
        choices=CACHE_MODES,
        help="How the teacher's outputs reach training: none (the teacher runs on every batch), "
        "memory or disk (computed once on the un-augmented training inputs and carried with "
        "the batches, so distillation runs at student speed; disk shares them through "
        "--cache_dir), replay (--replay_views augmented views per image and the teacher's "
        "top --replay_topk probabilities on each, stored in --cache_dir and replayed; with "
        "--teaching=consistent or function_matching).",
    )
    dir: str = setting(
        "savedmodels/cache",
        flag="cache_dir",
        group="models",
        role=REPORT,
        help="Folder of the disk and replay caches, shared by every run; an entry is keyed by "
        "the teacher weights, data set, split, subset, seed and preprocessing.",
    )
    replay_views: int = setting(
        4, group="models", minimum=1, help="--teacher_cache=replay: views stored per image."
    )
    replay_topk: int = setting(
        5,
        group="models",
        minimum=1,
        help="--teacher_cache=replay: teacher probabilities kept per view.",
    )

    def __post_init__(self):
        check(self)


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """A registered method and the options given for it (the others keep their defaults)."""

    name: str = setting("kd", flag="method", group="method", help="Distillation method.")
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class TeachingConfig:
    """What teacher and student see of a batch (`tfkd.teacher.teaching`), and out-of-domain data."""

    mode: str = setting(
        NONE,
        flag="teaching",
        group="method",
        choices=TEACHING_MODES,
        help="What teacher and student see of a training batch: none (the batch as it comes, to "
        "both), fixed (teacher logits computed once on un-augmented images), independent "
        "(two augmented views), consistent (one augmented view), function_matching "
        "(consistent plus mixup; KL only unless --alpha is given).",
    )
    mixup_alpha: float = setting(
        1.0,
        group="method",
        minimum=0,
        open_minimum=True,
        help="Beta(a, a) parameter of the mixup weight.",
    )
    mixup_partners: str = setting(
        "permutation",
        group="method",
        choices=augmentation.PARTNERS,
        help="Mixup partner of each example: a random permutation without fixed points, or the "
        "next example in the batch (roll).",
    )
    crop_min_scale: float = setting(
        0.08,
        group="method",
        minimum=0,
        maximum=1,
        open_minimum=True,
        help="Smallest area fraction of the inception crop used by --teaching.",
    )
    flip: bool = setting(
        True, flag="teaching_flip", group="method", help="Random horizontal flips in --teaching."
    )
    distill_dataset: Optional[str] = setting(
        None,
        group="data",
        help="Out-of-domain distillation: the student learns from this data set's train images "
        "(resized to --dataset's input shape, labels unused) and is evaluated on "
        "--dataset's test split.",
    )
    test_every: int = setting(
        0,
        group="output",
        minimum=0,
        help="Every N epochs record the student's test accuracy as history column test_accuracy "
        "(0 = never).",
    )

    def __post_init__(self):
        check(self)


@dataclasses.dataclass(frozen=True)
class CurriculumConfig:
    """Training order (`tfkd.curriculum`) and its pacing."""

    order: str = setting(
        NONE,
        flag="curriculum",
        group="method",
        choices=curriculum.CURRICULA,
        help="Training order: none (shuffled), teacher (teacher-scored, easy to hard, "
        "class-stratified), inverse (hard to easy) or random (a fixed random order: the "
        "control for teacher).",
    )
    pacing: str = setting(
        NONE,
        group="method",
        choices=curriculum.PACINGS,
        help="Curriculum pacing: none keeps the fixed order every epoch; linear, step and "
        "exponential draw early epochs from a shuffled easiest prefix.",
    )
    pacing_start: float = setting(
        0.2,
        group="method",
        minimum=0,
        maximum=1,
        open_minimum=True,
        help="Fraction of the curriculum used in the first epoch.",
    )
    pacing_epochs: int = setting(
        5,
        group="method",
        minimum=1,
        help="Pacing growth: the epoch from which the whole training set is in use.",
    )

    def __post_init__(self):
        check(self)


@dataclasses.dataclass(frozen=True)
class CalibrationConfig:
    """Temperature-scale the teacher on the validation split before distilling. `mode`
    "scale" (the default) distills from logits / T* at the method's T, "replace" at T = T*
    (docs/calibration/converged compares them)."""

    enabled: bool = setting(
        False,
        flag="calibrate_teacher",
        group="method",
        help="Fit the teacher's temperature T* on the validation split (minimum NLL) and distill "
        "from the calibrated teacher.",
    )
    mode: str = setting(
        "scale",
        flag="calibration_mode",
        group="method",
        choices=targets.CALIBRATION_MODES,
        help="scale (default): teacher logits / T*, then the distillation temperature; "
        "replace: the distillation temperature becomes T* (the paper's Eq. 3).",
    )
    bins: int = setting(
        calibration.DEFAULT_BINS,
        flag="calibration_bins",
        group="method",
        minimum=1,
        help="Confidence bins of the ECE and the reliability diagrams.",
    )

    def __post_init__(self):
        check(self)


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    """Where and what the run writes. `dir` None: savedmodels/<dataset>-<method>-<student>-<time>.
    `evaluate_test` False: the test split is never read (no test accuracies; exports are not
    measured on it), as in a hyperparameter-search trial; it has no flag."""

    dir: Optional[str] = setting(
        None,
        flag="output_dir",
        group="output",
        role=REPORT,
        help="Output folder (default savedmodels/<dataset>-<method>-<student>-<time>). A run in "
        "progress lives in <output_dir>.partial/; re-running the same command resumes it.",
    )
    overwrite: bool = setting(
        False,
        group="output",
        role=REPORT,
        help="Replace an existing --output_dir, and start over instead of resuming a .partial/ "
        "one.",
    )
    export: tuple = setting(
        export.DEFAULT_FORMATS,
        group="output",
        role=OUTPUT,
        help=f"Export formats, a comma list of {', '.join(export.FORMATS)}.",
    )
    baseline: bool = setting(
        False,
        group="output",
        role=OUTPUT,
        help="Also train the student alone with the same schedule.",
    )
    verbose: int = setting(
        2,
        group="output",
        role=REPORT,
        help="Keras verbosity: 0 silent, 1 progress bar, 2 one line/epoch.",
    )
    evaluate_test: bool = True


# The settings a resumed run, a resumed search and a folder of trained teachers must share.
RESUME_ROLES = {
    "run": (TEACHER, STUDENT, OUTPUT),
    "search": (TEACHER, STUDENT),
    "teachers": (TEACHER,),
}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One distillation run: data -> teacher(s) -> calibration -> distillation -> baseline ->
    evaluation -> export. `deterministic` seeds everything and enables op determinism, so two
    runs (or an interrupted and resumed one) give identical weights."""

    data: DataConfig = dataclasses.field(default_factory=lambda: DataConfig("synthetic"))
    teacher: TeacherConfig = TeacherConfig()
    student: str = setting("resnet8", group="models", help="Student architecture.")
    method: MethodConfig = MethodConfig()
    teaching: TeachingConfig = TeachingConfig()
    cache: CacheConfig = CacheConfig()
    curriculum: CurriculumConfig = CurriculumConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    schedule: TrainConfig = TrainConfig()
    augment: bool = setting(
        False, group="data", role=TEACHER, help="Pad-4 random crop and flip for images."
    )
    strategy: str = setting(
        "default",
        group="training",
        role=TEACHER,
        choices=training.STRATEGIES,
        help="tf.distribute strategy.",
    )
    tpu: Optional[str] = setting(
        None,
        group="training",
        role=TEACHER,
        help="--strategy=tpu: the TPU's name or grpc:// address (TPUClusterResolver).",
    )
    deterministic: bool = setting(
        False,
        group="training",
        role=TEACHER,
        help="Seed everything and enable TensorFlow op determinism: identical weights from run "
        "to run and after a resume.",
    )
    output: OutputConfig = OutputConfig()
    lm: LanguageModelConfig = LanguageModelConfig()  # --dataset=lm:... or stdlib (tfkd.lm.run)

    def __post_init__(self):
        """Refuses a config that cannot run: a field outside its choices or range, or options
        that do not go together (`tfkd.experiment.validation`); ConfigError names the field."""
        check(self)
        validation.check(self)

    @property
    def seed(self):
        return self.data.seed

    @classmethod
    def from_flags(cls, args):
        """Parses command-line strings (`--flagfile=` included) into a config.

        Uses its own flag registry, so it can be called any number of times in one process and
        leaves absl's global flags alone. Raises ValueError naming the flag on bad input.
        """
        return COMMAND_LINE.to_config(COMMAND_LINE.parse(args))

    def to_flags(self):
        """The command-line strings that `from_flags` turns back into this config."""
        return COMMAND_LINE.to_args(self)

    def flag_values(self):
        """{flag: value} of every setting (method options: those given), as results.json's
        "flags" records them."""
        return COMMAND_LINE.to_values(self)

    def settings(self, scope="run"):
        """{flag: value} of the settings that must be the same for `scope` to resume: "run"
        (a run's .partial folder: all but those that only report), "search" (a search folder:
        also not what only a finished run writes) or "teachers" (teachers trained once for a
        search: what the teachers' training reads)."""
        return COMMAND_LINE.to_values(self, RESUME_ROLES[scope])

    def teacher_schedule(self):
        """The schedule of a teacher trained here: the run's, for `teacher.epochs` epochs."""
        return dataclasses.replace(
            self.schedule,
            epochs=self.teacher.epochs,
            warmup_epochs=min(self.schedule.warmup_epochs, self.teacher.epochs - 1),
        )


COMMAND_LINE = CommandLine(RunConfig, program="bin/distill", method_options=True)
