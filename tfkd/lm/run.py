"""An end-to-end causal-LM distillation run: data, teacher, student, student alone, report.

    results = tfkd.lm.run(tfkd.lm.LMRunConfig(output_dir="/tmp/lm", epochs=2))
    python -m tfkd.lm --flagfile=docs/lm/stdlib_gpt.flags --output_dir=/tmp/lm

Writes `results.json` (per-token NLL and perplexity of teacher, student and student alone on
the validation and test splits, `results[role]["perplexity"]` on test; CPU seconds per phase;
the store's bytes per token; a few sampled completions), `history.csv` (the student's epochs)
and `student.keras` under `output_dir`.
"""

import dataclasses
import gc
import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tfkd import losses
from tfkd.data import language_modeling as lm_data
from tfkd.lm.arguments import parse_flags
from tfkd.lm.distiller import CausalLMDistiller
from tfkd.lm.sampling import sample_completions
from tfkd.lm.store import TopKStore, check_k
from tfkd.models import gpt as lm_models

STDLIB = "stdlib"


@dataclasses.dataclass(frozen=True)
class LMRunConfig:
    """One run; every field is the flag `--<name>` of `python -m tfkd.lm`."""

    dataset: str = STDLIB  # "stdlib" (the standard library's docstrings) or lm:FILE_OR_DIR
    corpus_bytes: int = 120_000  # size of the stdlib corpus
    sequence_length: int = 64
    split_by: str = "document"
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    prompt_column: str = ""
    completion_column: str = ""
    teacher: str = "gpt_small"  # a zoo name (trained here), preset:DIR or a .keras file
    teacher_epochs: int = 3
    student: str = "gpt_tiny"
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 1e-3
    dropout: float = 0.0
    divergence: str = "forward_kl"
    jsd_beta: float = 0.5
    temperature: float = 1.0
    alpha: float = 0.9
    on_policy_fraction: float = 0.0
    max_new_tokens: int = 16
    sampling_temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    teacher_cache: str = "none"  # "disk": distil from stored top-k, the teacher out of memory
    cache_topk: int = 32
    baseline: bool = True
    samples: int = 3
    seed: int = 0
    data_seed: int = -1  # the corpus sample and split; -1: --seed
    output_dir: str = ""

    def check(self):
        if not self.output_dir:
            raise ValueError("--output_dir is required")
        if self.dataset != STDLIB and not self.dataset.startswith("lm:"):
            raise ValueError(f"--dataset must be {STDLIB} or lm:FILE_OR_DIR, got {self.dataset!r}")
        if self.divergence not in losses.DIVERGENCES:
            raise ValueError(
                f"--divergence must be one of {', '.join(losses.DIVERGENCES.names())}, got "
                f"{self.divergence!r}"
            )
        if self.teacher_cache not in ("none", "disk"):
            raise ValueError(f"--teacher_cache must be none or disk, got {self.teacher_cache!r}")
        if self.teacher_cache == "disk" and self.on_policy_fraction > 0:
            raise ValueError(
                "--teacher_cache=disk cannot serve --on_policy_fraction > 0: the "
                "store holds the teacher's outputs on the data, not on samples"
            )
        for name in ("epochs", "batch_size", "sequence_length", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be a positive integer, got {getattr(self, name)}")

    @classmethod
    def from_flags(cls, argv):
        """A config from `--name=value` arguments and `--flagfile=PATH` files."""
        return cls(**parse_flags(argv, cls))


def token_nll(model, dataset):
    """Per-token negative log-likelihood (nats) and perplexity of `model` over `dataset`'s
    weighted target tokens."""
    total, count = 0.0, 0.0
    for x, y, weight in dataset:
        inputs = {"token_ids": x["token_ids"], "padding_mask": x["padding_mask"]}
        log_probs = tf.nn.log_softmax(tf.cast(model(inputs, training=False), tf.float32))
        nll = -tf.gather(log_probs, tf.cast(y, tf.int32), batch_dims=2)
        total += float(tf.reduce_sum(nll * weight))
        count += float(tf.reduce_sum(weight))
    nll = total / max(count, 1.0)
    return {"nll": nll, "perplexity": math.exp(nll), "tokens": int(count)}


def evaluate(model, data, batch_size):
    scores = {
        split: token_nll(model, data.dataset(split, batch_size)) for split in ("validation", "test")
    }
    return {
        **scores,
        "perplexity": scores["test"]["perplexity"],
        "parameters": int(model.count_params()),
    }


def load_data(config):
    data_seed = config.seed if config.data_seed < 0 else config.data_seed
    if config.dataset == STDLIB:
        path = os.path.join(config.output_dir, "corpus.txt")
        lm_data.build_stdlib_corpus(path, seed=data_seed, max_bytes=config.corpus_bytes)
    else:
        path = config.dataset[len("lm:") :]
    return lm_data.load_lm(
        path,
        config.sequence_length,
        split_by=config.split_by,
        validation_fraction=config.validation_fraction,
        test_fraction=config.test_fraction,
        seed=data_seed,
        prompt_column=config.prompt_column or None,
        completion_column=config.completion_column or None,
    )


def build_model(spec, data, config, seed):
    return lm_models.load_causal_lm(
        spec, data.vocabulary_size, data.sequence_length, seed=seed, dropout=config.dropout
    )


def train_alone(model, config, data, epochs, log_dir=None):
    """Trains `model` on the per-token cross-entropy of the data (no teacher)."""
    trainer = CausalLMDistiller(model, None, alpha=0.0)
    trainer.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
    callbacks = [keras.callbacks.CSVLogger(os.path.join(log_dir, "history.csv"))] if log_dir else []
    return trainer.fit(
        data.dataset("train", config.batch_size, shuffle=True, seed=config.seed),
        epochs=epochs,
        validation_data=data.dataset("validation", config.batch_size),
        callbacks=callbacks,
        shuffle=False,
        verbose=0,
    ).history


def completions(model, data, count, config):
    """A few completions of test-split prompts (their first quarter) sampled from `model`."""
    split = data.test
    rows = min(count, len(split))
    tokens = split.token_ids[:rows]
    lengths = np.maximum(split.padding_mask[:rows].sum(axis=1) // 4, 1).astype("int32")
    sampled, generated = sample_completions(
        model,
        tokens,
        lengths,
        config.max_new_tokens,
        seed=tf.constant([config.seed, 0]),
        temperature=config.sampling_temperature,
        top_k=config.top_k,
        top_p=config.top_p,
        end_token_id=data.tokenizer.end_token_id,
    )
    sampled, generated = sampled.numpy(), generated.numpy()
    return [
        {
            "prompt": data.tokenizer.decode(tokens[row, : lengths[row]]),
            "completion": data.tokenizer.decode(sampled[row][generated[row] > 0]),
        }
        for row in range(rows)
    ]


def run(config):
    """Runs `config` (an `LMRunConfig`) and returns the results it writes to results.json."""
    config.check()
    os.makedirs(config.output_dir, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    seconds, results = {}, {"config": dataclasses.asdict(config)}
    data = load_data(config)
    results["data"] = {
        split: {
            "sequences": len(data.split(split)),
            "target_tokens": data.split(split).num_target_tokens,
        }
        for split in lm_data.SPLITS
    }
    results["data"]["vocabulary_size"] = data.vocabulary_size

    start = time.process_time()
    teacher = build_model(config.teacher, data, config, seed=config.seed + 1)
    if config.teacher in lm_models.CAUSAL_LMS:
        train_alone(teacher, config, data, config.teacher_epochs)
        # Later runs on the same data can load it: --teacher=OUTPUT_DIR/teacher.keras.
        teacher.save(os.path.join(config.output_dir, "teacher.keras"))
    results["teacher"] = evaluate(teacher, data, config.batch_size)
    seconds["teacher"] = time.process_time() - start

    train = data.dataset("train", config.batch_size, shuffle=True, seed=config.seed)
    validation = data.dataset("validation", config.batch_size)
    if config.teacher_cache == "disk":
        check_k(config.cache_topk, data.vocabulary_size)
        start = time.process_time()
        root = os.path.join(config.output_dir, "store")
        store, validation_store = (
            TopKStore.open_or_build(root, teacher, data.split(split), config.cache_topk)
            for split in ("train", "validation")
        )
        seconds["store"] = time.process_time() - start
        results["store"] = {
            "k": store.k,
            "bytes_per_token": store.bytes_per_token,
            "size_bytes": store.size_bytes + validation_store.size_bytes,
            "reused": not store.built,
        }
        train = store.dataset(data.train, config.batch_size, shuffle=True, seed=config.seed)
        validation = validation_store.dataset(data.validation, config.batch_size)
        del teacher  # distillation reads the store only
        gc.collect()
        teacher = None

    start = time.process_time()
    student = build_model(config.student, data, config, seed=config.seed + 2)
    distiller = CausalLMDistiller(
        student,
        teacher,
        divergence=config.divergence,
        temperature=config.temperature,
        alpha=config.alpha,
        jsd_beta=config.jsd_beta,
        on_policy_fraction=config.on_policy_fraction,
        max_new_tokens=config.max_new_tokens,
        sampling_temperature=config.sampling_temperature,
        top_k=config.top_k,
        top_p=config.top_p,
        end_token_id=data.tokenizer.end_token_id,
        seed=config.seed,
    )
    distiller.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
    history = distiller.fit(
        train,
        epochs=config.epochs,
        validation_data=validation,
        callbacks=[keras.callbacks.CSVLogger(os.path.join(config.output_dir, "history.csv"))],
        shuffle=False,
        verbose=0,
    )
    seconds["student"] = time.process_time() - start
    results["student"] = {**evaluate(student, data, config.batch_size), "history": history.history}
    student.save(os.path.join(config.output_dir, "student.keras"))
    if config.samples > 0:
        results["samples"] = completions(student, data, config.samples, config)

    if config.baseline:
        start = time.process_time()
        alone = build_model(config.student, data, config, seed=config.seed + 2)
        train_alone(alone, config, data, config.epochs)
        seconds["baseline"] = time.process_time() - start
        results["baseline"] = evaluate(alone, data, config.batch_size)
    results["cpu_seconds"] = seconds
    with open(os.path.join(config.output_dir, "results.json"), "w") as handle:
        json.dump(results, handle, indent=1, default=float)
    return results
