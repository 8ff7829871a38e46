"""Causal-LM training throughput: the student alone, distillation from stored top-k teacher
log-probabilities and online distillation side by side in one process, and the on-policy
sampler's generation throughput.

    bin/bench lm                                    # gpt_small -> gpt_tiny, 64 tokens, batch 16
    bin/bench lm --steps=2 --repetitions=1 --output=/tmp/lm.json

Every variant trains a fresh student of the same architecture and seed on the same sequences
(seeded random byte tokens, each row padded after a random length, so rows hold different
numbers of valid tokens): `student_alone` on the per-token cross-entropy, `stored_topk` from a
`TopKStore` of the teacher's top-k (built once, before timing; the teacher is not called while
training) and `online` with the teacher's forward pass in every step (forward KL). One
repetition runs each variant once, in a rotated order, for one pass over the `steps + 1` batches
(one `fit` call, traced beforehand); tokens are the valid target tokens of those batches. Tokens
per CPU-second (`time.process_time()`, every thread of this process, input pipeline included)
are medians over repetitions, beside the CPU seconds of a pass over each variant's input
pipeline alone (where the store's reads show); the goal `stored_topk` >= 0.90x `student_alone` is judged on the
median of per-repetition ratios. Generation: tokens sampled per second by the on-policy sampler
(`sample_completions`, one traced graph) for a batch of prompts of half the sequence length.
"""

import dataclasses
import json
import os
import shlex
import statistics
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from tfkd.atomic import write_text
from tfkd.data.language_modeling import ByteTokenizer, LMData, TokenSplit
from tfkd.lm.arguments import parse_flags
from tfkd.lm.distiller import CausalLMDistiller
from tfkd.lm.sampling import Sampling, sample_completions
from tfkd.lm.store import TopKStore, check_k
from tfkd.models import gpt

VARIANTS = ("student_alone", "stored_topk", "online")
GOAL = ("stored_topk_vs_student_alone", "stored_topk", "student_alone", 0.90)
ALPHA = 0.9


@dataclasses.dataclass(frozen=True)
class LMBenchConfig:
    """What `bin/bench lm` measures; every field is its flag `--<name>`."""

    teacher: str = "gpt_small"
    student: str = "gpt_tiny"
    sequence_length: int = 64
    batch_size: int = 16
    steps: int = 20  # batches per repetition after the first
    repetitions: int = 3
    cache_topk: int = 32
    max_new_tokens: int = 16
    store_dir: str = ""  # default: a temporary folder
    output: str = "docs/benchmarks/lm_throughput.json"
    seed: int = 0

    def check(self):
        for name in ("sequence_length", "batch_size", "steps", "repetitions", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("teacher", "student"):
            if getattr(self, name) not in gpt.causal_lm_names():
                raise ValueError(
                    f"--{name} must be one of {', '.join(gpt.causal_lm_names())}, got "
                    f"{getattr(self, name)!r}"
                )
        check_k(self.cache_topk, ByteTokenizer.vocabulary_size)
        if self.max_new_tokens > self.sequence_length // 2:
            raise ValueError(
                f"--max_new_tokens must be at most half of --sequence_length "
                f"({self.sequence_length // 2}), got {self.max_new_tokens}"
            )


def synthetic_split(config):
    """`(steps + 1) * batch_size` sequences of random byte tokens, row r real up to a random
    length in [sequence_length / 2, sequence_length + 1] and padded after it."""
    rng = np.random.default_rng(config.seed)
    rows, length = (config.steps + 1) * config.batch_size, config.sequence_length + 1
    tokenizer = ByteTokenizer()
    tokens = rng.integers(tokenizer.offset, tokenizer.vocabulary_size, (rows, length))
    real = rng.integers(length // 2, length + 1, rows)
    padding_mask = (np.arange(length)[None, :] < real[:, None]).astype("int32")
    tokens = np.where(padding_mask > 0, tokens, tokenizer.pad_token_id).astype("int32")
    return TokenSplit(tokens, padding_mask, np.ones_like(padding_mask))


class LMBench:
    """The shared data, teacher and store, and each variant's (distiller, dataset)."""

    def __init__(self, config):
        self.config = config
        split = synthetic_split(config)
        self.data = LMData(
            split, split, split, ByteTokenizer(), config.sequence_length, "synthetic"
        )
        self.teacher = self.model(config.teacher, seed=1)
        self.store_dir = config.store_dir or tempfile.mkdtemp(prefix="tfkd-lm-bench-")
        self.setup_seconds = {}

    def model(self, name, seed):
        vocabulary = self.data.vocabulary_size
        return gpt.build_causal_lm(name, vocabulary, self.config.sequence_length, seed=seed)

    def store(self):
        start = time.process_time()
        store = TopKStore.open_or_build(
            self.store_dir, self.teacher, self.data.train, self.config.cache_topk
        )
        self.setup_seconds["store_cpu_seconds"] = time.process_time() - start
        return store

    def build(self, name):
        student = self.model(self.config.student, seed=2)
        dataset = self.data.dataset("train", self.config.batch_size)
        if name == "student_alone":
            distiller = CausalLMDistiller(student, None, alpha=0.0)
        elif name == "online":
            distiller = CausalLMDistiller(student, self.teacher, alpha=ALPHA)
        elif name == "stored_topk":
            self.stored = self.store()
            distiller = CausalLMDistiller(student, None, alpha=ALPHA)
            dataset = self.stored.dataset(self.data.train, self.config.batch_size)
        else:
            raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
        distiller.compile(optimizer=keras.optimizers.Adam(1e-3))
        return distiller, dataset

    def timed_tokens(self):
        """Valid target tokens of one pass over the batches."""
        return int(self.data.train.shifted()[2].sum())


def time_pass(runner):
    """(wall seconds, CPU seconds) of one `fit` pass over the runner's dataset."""
    distiller, dataset = runner
    start = (time.perf_counter(), time.process_time())
    distiller.fit(dataset, epochs=1, verbose=0, shuffle=False)
    return time.perf_counter() - start[0], time.process_time() - start[1]


def time_pipeline(runner):
    """CPU seconds of one pass over the runner's dataset alone (reading, no training)."""
    start = time.process_time()
    for _ in runner[1]:
        pass
    return time.process_time() - start


def generation(bench):
    """Tokens per second of the on-policy sampler: the student samples `max_new_tokens` after
    prompts of half the sequence length, one traced graph, warmed up once."""
    config = bench.config
    student = bench.model(config.student, seed=2)
    tokens = bench.data.train.token_ids[: config.batch_size]
    prompt_lengths = np.full([len(tokens)], config.sequence_length // 2, "int32")
    sample = tf.function(
        lambda ids, lengths, seed: sample_completions(
            student, ids, lengths, Sampling(max_new_tokens=config.max_new_tokens), seed=seed
        )
    )
    sample(tokens, prompt_lengths, tf.constant([config.seed, 0]))
    walls, cpus, counts = [], [], []
    for repetition in range(config.repetitions):
        start = (time.perf_counter(), time.process_time())
        _, generated = sample(tokens, prompt_lengths, tf.constant([config.seed, repetition + 1]))
        counts.append(int(generated.numpy().sum()))
        walls.append(time.perf_counter() - start[0])
        cpus.append(time.process_time() - start[1])
    return {
        "batch_size": len(tokens),
        "prompt_length": config.sequence_length // 2,
        "max_new_tokens": config.max_new_tokens,
        "tokens": counts[0],
        "tokens_per_second": statistics.median(c / w for c, w in zip(counts, walls)),
        "tokens_per_cpu_second": statistics.median(c / s for c, s in zip(counts, cpus)),
    }


def summarize(bench, measurements, pipelines, gen, command):
    """The JSON report from per-repetition (wall, CPU) seconds per variant and per-repetition
    CPU seconds of the variants' input pipelines alone."""
    config, tokens = bench.config, bench.timed_tokens()
    variants = {
        name: {
            "tokens_per_repetition": tokens,
            "wall_seconds": [wall for wall, _ in runs],
            "cpu_seconds": [cpu for _, cpu in runs],
            "tokens_per_second": statistics.median(tokens / wall for wall, _ in runs),
            "tokens_per_cpu_second": statistics.median(tokens / cpu for _, cpu in runs),
            "input_pipeline_cpu_seconds": statistics.median(pipelines[name]),
        }
        for name, runs in measurements.items()
    }
    ratios = {
        f"{name}/student_alone": statistics.median(
            base / cpu
            for (_, cpu), (_, base) in zip(measurements[name], measurements["student_alone"])
        )
        for name in VARIANTS[1:]
    }
    goal, numerator, denominator, at_least = GOAL
    measured = ratios[f"{numerator}/{denominator}"]
    return {
        "variants": variants,
        "cpu_time_ratio_to_student_alone": ratios,
        "goals": {goal: {"at_least": at_least, "measured": measured, "met": measured >= at_least}},
        "generation": gen,
        "store": {
            "k": bench.stored.k,
            "bytes_per_token": bench.stored.bytes_per_token,
            **bench.setup_seconds,
        },
        "config": {
            **dataclasses.asdict(config),
            "cpu_count": os.cpu_count(),
            "TF_NUM_INTRAOP_THREADS": os.environ.get("TF_NUM_INTRAOP_THREADS"),
        },
        "command": command,
    }


def table(report):
    """Markdown table of the report's medians and the goal."""
    lines = [
        "| variant | tokens/s | tokens/CPU-s | vs student_alone (CPU-s) | input pipeline CPU-s |",
        "|---|---:|---:|---:|---:|",
    ]
    ratios = report["cpu_time_ratio_to_student_alone"]
    for name, entry in report["variants"].items():
        ratio = ratios.get(f"{name}/student_alone", 1.0)
        lines.append(
            f"| {name} | {entry['tokens_per_second']:.0f} | "
            f"{entry['tokens_per_cpu_second']:.0f} | {ratio:.3f} | "
            f"{entry['input_pipeline_cpu_seconds']:.3f} |"
        )
    gen = report["generation"]
    lines.append(
        f"| generation (on-policy sampler) | {gen['tokens_per_second']:.0f} | "
        f"{gen['tokens_per_cpu_second']:.0f} | | |"
    )
    lines += ["", "| goal | at least | measured | met |", "|---|---:|---:|---|"]
    for goal, entry in report["goals"].items():
        met = "yes" if entry["met"] else "no"
        lines.append(f"| {goal} | {entry['at_least']} | {entry['measured']:.3f} | {met} |")
    return "\n".join(lines)


def run(config, command="bin/bench lm"):
    """Measures every variant of `config`; writes `config.output` and returns the report."""
    config.check()
    keras.utils.set_random_seed(config.seed)
    bench = LMBench(config)
    runners = {name: bench.build(name) for name in VARIANTS}
    for runner in runners.values():
        time_pass(runner)  # traces, warms up
    measurements = {name: [] for name in VARIANTS}
    pipelines = {name: [] for name in VARIANTS}
    for repetition in range(config.repetitions):
        shift = repetition % len(VARIANTS)
        for name in VARIANTS[shift:] + VARIANTS[:shift]:
            measurements[name].append(time_pass(runners[name]))
            pipelines[name].append(time_pipeline(runners[name]))
    report = summarize(bench, measurements, pipelines, generation(bench), command)
    write_text(config.output, json.dumps(report, indent=2))
    print(table(report))
    return report


def main(argv):
    """`bin/bench lm [--name=value ...]` (flags: LMBenchConfig's fields); a bad flag raises
    ValueError naming it. Returns the report."""
    config = LMBenchConfig(**parse_flags(argv, LMBenchConfig))
    return run(config, command=" ".join(["bin/bench lm", *map(shlex.quote, argv)]))
