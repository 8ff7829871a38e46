"""Distillation throughput: the same models and data in one process, variants interleaved.

    bin/bench                                   # resnet56 -> resnet20, 32x32x3, batch 128
    bin/bench --teacher=cnn_small --student=cnn_small --steps=2 --repetitions=2 --rss=none

Every variant trains (or, for teacher_forward, runs) the same student / teacher architectures on
the same random uint8 images scaled to [0, 1]. Each repetition runs every variant once, in a
rotated order; within a repetition a variant runs `steps + 1` steps and the timed window starts
after the first (which starts its input pipeline). Images per second (wall clock) and images per
CPU-second (`time.process_time()`, every thread of this process) are the medians over
repetitions. Other processes share the CPU, which moves wall-clock numbers by up to 2x; CPU
seconds are what the goals are judged on: each goal is the median over repetitions of the
per-repetition ratio of images per CPU-second. Peak RSS comes from one child process per variant
(`--rss=subprocess`) that builds and runs that variant alone, since one process running every
variant only has one peak.

Variants: see VARIANTS; the `_mixed_bfloat16` ones build the student under `--precision=
mixed_bfloat16` (bfloat16 compute, float32 weights). Set-up that is not training (building the teacher cache, the replay
storage) is done once and reported in "setup_seconds", outside the timed windows.
"""

import dataclasses
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

import tfkd
from tfkd import training
from tfkd.atomic import write_text
from tfkd.models import MODELS
from tfkd.settings import ConfigError, check, setting
from tfkd.teacher import cache, replay, serving

VARIANTS = (
    "plain_fit",
    "teacher_forward",
    "online_kd",
    "online_kd_fast_teacher",
    "cached_kd",
    "replay_kd",
    "multi_teacher_k1_online",
    "multi_teacher_k2_online",
    "multi_teacher_k4_online",
    "multi_teacher_k1_cached",
    "multi_teacher_k2_cached",
    "multi_teacher_k4_cached",
    "keras_distiller",
    "plain_fit_mixed_bfloat16",
    "cached_kd_mixed_bfloat16",
)
# (name, numerator, denominator, at least)
GOALS = (
    ("cached_kd_vs_plain_fit", "cached_kd", "plain_fit", 0.90),
    ("multi_teacher_k4_cached_vs_plain_fit", "multi_teacher_k4_cached", "plain_fit", 0.85),
    ("replay_kd_vs_plain_fit", "replay_kd", "plain_fit", 0.80),
    ("online_kd_vs_keras_distiller", "online_kd", "keras_distiller", 0.97),
    ("online_kd_fast_teacher_vs_online_kd", "online_kd_fast_teacher", "online_kd", 1.15),
    ("online_kd_fast_teacher_vs_keras_distiller", "online_kd_fast_teacher", "keras_distiller", 1.2),
)
TEMPERATURE, ALPHA = 4.0, 0.9


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """What `bin/bench` measures; every field is its flag (`tfkd.cli.bench`)."""

    teacher: str = setting("resnet56", group="bench", help="Teacher architecture (images).")
    student: str = setting("resnet20", group="bench", help="Student architecture (images).")
    batch_size: int = setting(128, group="bench", minimum=1, help="Batch size.")
    steps: int = setting(10, group="bench", minimum=1, help="timed steps per repetition")
    repetitions: int = setting(
        3, group="bench", minimum=1, help="Repetitions; each runs every variant once."
    )
    image_size: int = setting(32, group="bench", minimum=1, help="Image height and width.")
    num_classes: int = setting(100, group="bench", help="Classes of the random labels.")
    examples: Optional[int] = setting(
        None, group="bench", help="training images (default: batch_size * (steps + 1))"
    )
    variants: str = setting("all", group="bench", help="comma list of " + ", ".join(VARIANTS))
    fast_precision: str = setting(
        "bfloat16",
        group="bench",
        choices=("float32", "bfloat16"),
        help="Precision of online_kd_fast_teacher's teacher.",
    )
    replay_views: int = setting(4, group="bench", minimum=1, help="replay_kd: views per image.")
    replay_topk: int = setting(5, group="bench", help="replay_kd: probabilities kept per view.")
    rss: str = setting(
        "subprocess",
        group="bench",
        choices=("subprocess", "none"),
        help="Peak RSS from one child process per variant, or not measured.",
    )
    rss_steps: int = setting(
        2, group="bench", help="steps each peak-RSS child runs after its warm-up step"
    )
    cache_dir: Optional[str] = setting(
        None, group="bench", help="teacher cache folder (default: temp)"
    )
    output: str = setting("throughput.json", group="bench", help="The JSON report.")

    def __post_init__(self):
        names = self.variant_names
        unknown = [name for name in names if name not in VARIANTS]
        if unknown or not names:
            raise ConfigError(
                "variants",
                f"`variants`: unknown {unknown or list(names)}; known: {', '.join(VARIANTS)}",
            )
        check(self)
        for field in ("teacher", "student"):
            name = getattr(self, field)
            if name not in tfkd.models.names() or MODELS.get(name).input_rank != 3:
                raise ConfigError(
                    field,
                    f"`{field}`: {name!r} is not an image model; known: "
                    + ", ".join(n for n in tfkd.models.names() if MODELS.get(n).input_rank == 3),
                )

    @property
    def training_images(self):
        return self.examples or self.batch_size * (self.steps + 1)

    @property
    def variant_names(self):
        if self.variants == "all":
            return VARIANTS
        return tuple(name.strip() for name in self.variants.split(",") if name.strip())


class Bench:
    """Builds the shared data and models, and each variant's runner."""

    def __init__(self, args):
        self.args = args
        rng = np.random.default_rng(0)
        shape = (args.image_size, args.image_size, 3)
        self.x = rng.integers(0, 256, (args.training_images, *shape), dtype=np.uint8)
        self.y = rng.integers(0, args.num_classes, args.training_images).astype(np.int32)
        self.shape = shape
        self.cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="tfkd-bench-")
        self.setup_seconds = {}
        self._teachers = {}

    def teacher(self, k):
        """Teacher k (seeded, so every process builds the same weights and cache keys)."""
        if k not in self._teachers:
            self._teachers[k] = tfkd.models.build(
                self.args.teacher, self.shape, self.args.num_classes, seed=k + 1
            )
        return self._teachers[k]

    def student(self, precision="float32"):
        with training.precision_policy(precision):
            return tfkd.models.build(self.args.student, self.shape, self.args.num_classes, seed=100)

    def optimizer(self):
        return keras.optimizers.SGD(0.01, momentum=0.9)

    def plain_dataset(self):
        return tfkd.data.as_dataset(
            self.x, self.y, self.args.batch_size, shuffle=True, seed=0, drop_remainder=True
        ).repeat()

    def cached(self, count):
        teachers = [self.teacher(k) for k in range(count)]
        key = cache.cache_key(
            teachers, "bench-random", "train", subset=len(self.x), seed=0, preprocessing="uint8/255"
        )
        start = time.perf_counter()
        outputs = cache.TeacherCache("disk", cache_dir=self.cache_dir, verbose=0).outputs(
            teachers, self.x, key, batch_size=256
        )
        if outputs.built:
            self.setup_seconds[f"teacher_cache_k{count}"] = time.perf_counter() - start
        return cache.cached_dataset(
            self.x, self.y, outputs, self.args.batch_size, shuffle=True, seed=0, drop_remainder=True
        ).repeat()

    def replay_storage(self):
        path = os.path.join(
            self.cache_dir, f"replay-{self.args.replay_views}-{self.args.replay_topk}.npz"
        )
        if os.path.isfile(path):
            return replay.ReplayStorage.load(path)
        start = time.perf_counter()
        storage = replay.build_replay(
            self.teacher(0),
            self.x,
            views=self.args.replay_views,
            topk=min(self.args.replay_topk, self.args.num_classes),
            temperature=TEMPERATURE,
            verbose=0,
        )
        storage.save(path)
        self.setup_seconds["replay_storage"] = time.perf_counter() - start
        return storage

    # ---- variants: each returns (model to fit, dataset) or a callable for teacher_forward -------
    def build(self, name):
        precision = "mixed_bfloat16" if name.endswith("_mixed_bfloat16") else "float32"
        name = name.removesuffix("_mixed_bfloat16")
        if name == "teacher_forward":
            return self._forward_runner(self.teacher(0))
        if name == "plain_fit":
            model = self.student(precision)
            model.compile(
                self.optimizer(), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            )
            return model, self.plain_dataset()
        if name == "keras_distiller":
            model = keras.distillation.Distiller(
                teacher=self.teacher(0),
                student=self.student(),
                distillation_losses=keras.distillation.LogitsDistillation(
                    temperature=TEMPERATURE, loss=keras.losses.KLDivergence()
                ),
                student_loss_weight=1.0 - ALPHA,
            )
            model.compile(
                optimizer=self.optimizer(),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            )
            return model, self.plain_dataset()
        if name in ("online_kd", "online_kd_fast_teacher", "cached_kd", "replay_kd"):
            teacher = self.teacher(0)
            if name == "online_kd_fast_teacher":
                start = time.perf_counter()
                teacher = serving.fast_teacher(teacher, self.args.fast_precision)
                self.setup_seconds["fast_teacher"] = time.perf_counter() - start
            model = tfkd.Distiller(
                self.student(precision), teacher, temperature=TEMPERATURE, alpha=ALPHA
            )
            dataset = self.plain_dataset()
            if name == "cached_kd":
                model.teaching, dataset = cache.CachedTeaching(), self.cached(1)
            elif name == "replay_kd":
                model.teaching = cache.CachedTeaching()
                dataset = replay.replay_dataset(
                    self.replay_storage(),
                    self.x,
                    self.y,
                    self.args.batch_size,
                    seed=0,
                    drop_remainder=True,
                ).repeat()
            model.compile(optimizer=self.optimizer())
            return model, dataset
        if name.startswith("multi_teacher_k"):
            count = int(name.split("_k")[1].split("_")[0])
            teachers = [self.teacher(k) for k in range(count)]
            online = name.endswith("_online")
            kind = tfkd.MultiTeacherDistiller if online else cache.CachedMultiTeacherDistiller
            model = kind(
                self.student(), teachers, weighting="aver", temperature=TEMPERATURE, lambda2=0.0
            )
            model.compile(optimizer=self.optimizer())
            return model, self.plain_dataset() if online else self.cached(count)
        raise ValueError(f"unknown variant {name!r}")

    def _forward_runner(self, teacher):
        forward = tf.function(lambda inputs: teacher(inputs, training=False))
        return forward, self.plain_dataset()


class Window(keras.callbacks.Callback):
    """Times batches 1..end of one fit call (batch 0 starts the input pipeline)."""

    def __init__(self):
        super().__init__()
        self.start = self.stop = None

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 1:
            self.start = (time.perf_counter(), time.process_time())

    def on_train_batch_end(self, batch, logs=None):
        self.stop = (time.perf_counter(), time.process_time())


def run_variant(runner, steps):
    """(wall seconds, CPU seconds) of `steps` timed steps after one untimed step."""
    gc.collect()
    target, dataset = runner
    if callable(target) and not hasattr(target, "fit"):
        iterator = iter(dataset)
        target(next(iterator)[0]).numpy()
        start = (time.perf_counter(), time.process_time())
        for _ in range(steps):
            target(next(iterator)[0]).numpy()
        stop = (time.perf_counter(), time.process_time())
    else:
        window = Window()
        target.fit(dataset, steps_per_epoch=steps + 1, epochs=1, verbose=0, callbacks=[window])
        start, stop = window.start, window.stop
    return stop[0] - start[0], stop[1] - start[1]


def _median(values):
    return statistics.median(values) if values else None


def summarize(args, measurements, unavailable, rss, setup_seconds, command):
    """The JSON report from per-repetition (wall, CPU) seconds per variant."""
    images = args.batch_size * args.steps
    per_second, per_cpu, repetitions = {}, {}, {}
    for name in VARIANTS:
        runs = measurements.get(name)
        if not runs:
            per_second[name] = per_cpu[name] = None
            continue
        wall = [images / w for w, _ in runs]
        cpu = [images / c for _, c in runs]
        repetitions[name] = {"images_per_second": wall, "images_per_cpu_second": cpu}
        per_second[name], per_cpu[name] = _median(wall), _median(cpu)
    pairs = [(f"{name}/plain_fit", name, "plain_fit") for name in VARIANTS if name != "plain_fit"]
    pairs += [(f"{a}/{b}", a, b) for _, a, b, _ in GOALS if b != "plain_fit"]
    pairs += [
        (f"{name}/{base}", name, base)
        for name in VARIANTS
        for base in [name.removesuffix("_mixed_bfloat16")]
        if base not in (name, "plain_fit")
    ]
    ratios, per_repetition = {}, {}
    for label, a, b in pairs:
        if per_cpu.get(a) is None or per_cpu.get(b) is None:
            ratios[label] = per_repetition[label] = None
            continue
        ratios[label] = per_cpu[a] / per_cpu[b]
        per_repetition[label] = _median(
            [
                x / z
                for x, z in zip(
                    repetitions[a]["images_per_cpu_second"], repetitions[b]["images_per_cpu_second"]
                )
            ]
        )
    goals = {}
    for goal, a, b, target in GOALS:
        measured = per_repetition.get(f"{a}/{b}")
        entry = {
            "numerator": a,
            "denominator": b,
            "at_least": target,
            "measured": measured,
            "measure": "median over repetitions of the per-repetition ratio of images per "
            "CPU-second",
        }
        if measured is None:
            missing = [v for v in (a, b) if per_cpu.get(v) is None]
            entry.update(
                met=None,
                reason="; ".join(
                    f"{v}: {unavailable.get(v, 'not selected (--variants)')}" for v in missing
                ),
            )
        else:
            entry.update(
                met=measured >= target,
                margin=measured - target,
                relative_margin=measured / target - 1.0,
            )
        goals[goal] = entry
    return {
        "images_per_second": per_second,
        "images_per_cpu_second": per_cpu,
        "peak_rss_mb": {name: rss.get(name) for name in VARIANTS},
        "peak_rss_measure": (
            "VmHWM of one child process per variant that builds and runs only that variant"
            if args.rss == "subprocess"
            else "not measured (--rss=none)"
        ),
        "ratios": ratios,
        "per_repetition_ratios": per_repetition,
        "goals": goals,
        "repetitions": repetitions,
        "unavailable": unavailable,
        "setup_seconds": setup_seconds,
        "process_peak_rss_mb": own_peak_rss_mb(),
        "sizes": {
            "teacher": args.teacher,
            "student": args.student,
            "batch_size": args.batch_size,
            "timed_steps": args.steps,
            "repetitions": args.repetitions,
            "image_size": args.image_size,
            "num_classes": args.num_classes,
            "examples": args.training_images,
            "fast_precision": args.fast_precision,
            "replay_views": args.replay_views,
            "replay_topk": args.replay_topk,
            "cpu_count": os.cpu_count(),
        },
        "command": command,
    }


def table(report):
    """Markdown table of the report's medians and ratios to plain_fit."""
    lines = [
        "| variant | images/s | images/CPU-s | vs plain_fit (CPU-s) | peak RSS MB |",
        "|---|---:|---:|---:|---:|",
    ]
    fmt = lambda v, spec: "n/a" if v is None else format(v, spec)  # noqa: E731
    for name in VARIANTS:
        ratio = (
            1.0 if name == "plain_fit" else report["per_repetition_ratios"].get(f"{name}/plain_fit")
        )
        if report["images_per_cpu_second"][name] is None:
            ratio = None
        lines.append(
            f"| {name} | {fmt(report['images_per_second'][name], '.1f')} | "
            f"{fmt(report['images_per_cpu_second'][name], '.1f')} | "
            f"{fmt(ratio, '.3f')} | {fmt(report['peak_rss_mb'][name], '.0f')} |"
        )
    lines += ["", "| goal | at least | measured | met |", "|---|---:|---:|---|"]
    for goal, entry in report["goals"].items():
        met = "n/a" if entry["met"] is None else ("yes" if entry["met"] else "no")
        lines.append(f"| {goal} | {entry['at_least']} | {fmt(entry['measured'], '.3f')} | {met} |")
    return "\n".join(lines)


def own_peak_rss_mb():
    """This process image's peak resident set (VmHWM), in MB.

    Not `getrusage(...).ru_maxrss`: Linux carries that over from the parent through fork and
    exec, so a child started by a large parent would report the parent's peak.
    """
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child_rss(config, name):
    """Peak RSS (MB) of a fresh process that builds and runs only `name`."""
    command = [
        sys.executable,
        "-m",
        "tfkd.benchmarks",
        json.dumps(dataclasses.asdict(config)),
        name,
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    if done.returncode != 0:
        return None, done.stderr.strip().splitlines()[-1:] or ["failed"]
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"], None


def rss_child(config, name):
    """In the child process: builds and runs `name` alone and prints its peak RSS as JSON."""
    run_variant(Bench(config).build(name), config.rss_steps)
    print(json.dumps({"variant": name, "peak_rss_mb": own_peak_rss_mb()}))


def run(config, command="bin/bench"):
    """Measures every variant of `config`; writes `config.output` and returns the report.

    `command`: the command line recorded in the report."""
    bench = Bench(config)
    config = dataclasses.replace(config, cache_dir=bench.cache_dir)
    runners, unavailable = {}, {}
    for name in config.variant_names:
        try:
            runner = bench.build(name)
            run_variant(runner, 1)  # traces, warms up
            runners[name] = runner
        except Exception as error:  # noqa: BLE001 - reported as unavailable, not a fake number
            unavailable[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            print(f"{name}: unavailable ({unavailable[name]})", file=sys.stderr)
    measurements = {name: [] for name in runners}
    order = list(runners)
    for repetition in range(config.repetitions):
        shift = repetition % max(len(order), 1)
        for name in order[shift:] + order[:shift]:
            measurements[name].append(run_variant(runners[name], config.steps))
        print(f"repetition {repetition + 1}/{config.repetitions} done", file=sys.stderr)
    rss = {}
    if config.rss == "subprocess":
        for name in runners:
            rss[name], error = _child_rss(config, name)
            if error:
                unavailable.setdefault(name, f"peak RSS child failed: {error[0][:200]}")
    report = summarize(config, measurements, unavailable, rss, bench.setup_seconds, command)
    write_text(config.output, json.dumps(report, indent=2))
    print(table(report))
    return report


if __name__ == "__main__":  # the peak-RSS child of `run`: python -m tfkd.benchmarks CONFIG VARIANT
    rss_child(BenchConfig(**json.loads(sys.argv[1])), sys.argv[2])
