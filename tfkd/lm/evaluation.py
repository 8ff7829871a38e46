"""What a causal-LM run reports: per-token NLL and perplexity, sampled completions, report.md."""

import math

import numpy as np
import tensorflow as tf

from tfkd.lm.sampling import Sampling, sample_completions

SPLITS = ("validation", "test")
ROLES = ("teacher", "student", "baseline")


def token_nll(model, dataset):
    """Per-token negative log-likelihood (nats) and perplexity of `model` over `dataset`'s
    weighted target tokens: {"nll", "perplexity", "tokens"}."""
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
    """{"validation": token_nll, "test": token_nll, "perplexity": test perplexity,
    "parameters"} of `model` on `data` (an `LMData`)."""
    scores = {split: token_nll(model, data.dataset(split, batch_size)) for split in SPLITS}
    return {
        **scores,
        "perplexity": scores["test"]["perplexity"],
        "parameters": int(model.count_params()),
    }


def completions(model, data, count, sampling, seed):
    """`count` completions of test-split prompts (each sequence's first quarter) sampled from
    `model`; `sampling` is the run's `LanguageModelConfig`."""
    split = data.test
    rows = min(count, len(split))
    tokens = split.token_ids[:rows]
    lengths = np.maximum(split.padding_mask[:rows].sum(axis=1) // 4, 1).astype("int32")
    sampler = Sampling(
        max_new_tokens=sampling.max_new_tokens,
        temperature=sampling.sampling_temperature,
        top_k=sampling.sampling_top_k,
        top_p=sampling.sampling_top_p,
        end_token_id=data.tokenizer.end_token_id,
    )
    sampled, generated = sample_completions(
        model, tokens, lengths, sampler, seed=tf.constant([seed, 0])
    )
    sampled, generated = sampled.numpy(), generated.numpy()
    return [
        {
            "prompt": data.tokenizer.decode(tokens[row, : lengths[row]]),
            "completion": data.tokenizer.decode(sampled[row][generated[row] > 0]),
        }
        for row in range(rows)
    ]


def history_columns(history):
    """Epoch logs [{"epoch", name: value}] -> {name: [value per epoch]}."""
    names = sorted({name for row in history for name in row if name != "epoch"})
    return {name: [row.get(name) for row in history] for name in names}


def report_markdown(results):
    """report.md of a causal-LM run: perplexities, the store, CPU seconds and samples."""
    lines = [
        f"# {results['dataset']}: {results['student']['arch']} from {results['teacher']['arch']}",
        "",
        "| model | parameters | validation perplexity | test perplexity | test NLL (nats/token) |",
        "|---|---|---|---|---|",
    ]
    for role in ROLES:
        if role in results:
            scores = results[role]
            lines.append(
                f"| {role} | {scores['parameters']} | "
                f"{scores['validation']['perplexity']:.3f} | {scores['test']['perplexity']:.3f} "
                f"| {scores['test']['nll']:.4f} |"
            )
    store = results.get("store")
    if store:
        lines += [
            "",
            f"Stored teacher top-{store['k']}: {store['bytes_per_token']:.0f} bytes per token, "
            f"{store['size_bytes']} bytes ({'reused' if store['reused'] else 'built'}).",
        ]
    seconds = ", ".join(f"{phase} {value:.1f}" for phase, value in results["cpu_seconds"].items())
    lines += ["", f"CPU seconds: {seconds}."]
    for sample in results.get("samples", []):
        lines += [
            "",
            f"- prompt: `{sample['prompt']!r}`",
            f"  completion: `{sample['completion']!r}`",
        ]
    return "\n".join(lines) + "\n"
