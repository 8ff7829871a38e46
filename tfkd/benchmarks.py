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
import json
import os
import subprocess
import sys
from typing import Optional

import tfkd
from tfkd.atomic import write_text
from tfkd.benchmark_report import own_peak_rss_mb, summarize, table
from tfkd.benchmark_variants import VARIANTS, Bench, run_variant
from tfkd.models import MODELS
from tfkd.settings import ConfigError, check, setting


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
