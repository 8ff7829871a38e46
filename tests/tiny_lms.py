"""Tiny causal LMs and batches shared by the language-model tests."""

import numpy as np

from tfkd.models import gpt as lm

VOCABULARY, TIME = 24, 8


def tiny_lm(seed, hidden=16, layers=1):
    """A seeded GPT-2 whose token embeddings are scaled up so that its next-token
    distributions are far from uniform (logits of standard deviation ~2)."""
    model = lm.gpt2_causal_lm(
        VOCABULARY, layers, hidden, 2, TIME, seed=seed, name=f"lm_{seed}_{hidden}"
    )
    embeddings = model.backbone.token_embedding.embeddings
    embeddings.assign(embeddings * 50.0)
    return model


def batch(rows=4, seed=0):
    """(x, y, sample_weight) with padding, a masked prompt and a -100 label; rows differ in
    their numbers of valid targets."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(3, VOCABULARY, (rows, TIME + 1)).astype("int32")
    lengths = [TIME + 1, TIME + 1, 4, 3][:rows] + [TIME + 1] * max(rows - 4, 0)
    padding = np.zeros_like(tokens)
    for row, length in enumerate(lengths):
        padding[row, :length] = 1
        tokens[row, length:] = 0
    loss_mask = padding.copy()
    loss_mask[1, :3] = 0  # row 1: a prompt of three tokens
    x = {"token_ids": tokens[:, :-1], "padding_mask": padding[:, :-1]}
    y = tokens[:, 1:].copy()
    weight = (padding * loss_mask)[:, 1:].astype("float32")
    y[0, 2] = -100  # Hugging Face's "ignored" label
    return x, y, weight


def softmax(z, temperature=1.0):
    z = np.asarray(z, "float64") / temperature
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def kl(p, q):
    return (p * (np.log(p) - np.log(q))).sum(-1)
