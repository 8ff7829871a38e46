"""Causal language models by name: KerasHub GPT-2s built from configs, no download.

    model = tfkd.models.build_causal_lm("gpt_tiny", vocabulary_size=259, sequence_length=128)
    logits = model({"token_ids": ids, "padding_mask": mask})  # [batch, time, vocabulary]

Every model is a `keras_hub.models.GPT2CausalLM(backbone=GPT2Backbone(...),
preprocessor=None)`: it reads int32 `token_ids` and `padding_mask` [batch, time] and returns
next-token logits [batch, time, vocabulary_size] from the token embedding reused as the output
projection (tied weights). A local KerasHub preset (`preset:DIR`) or a `.keras` file loads
through `load_causal_lm`.
"""

import dataclasses
import os

import numpy as np

from tfkd.registry import Registry

CAUSAL_LMS = Registry("causal language model")

# GPT-2's initialisation (keras_hub gpt2_backbone.py): N(0, 0.02) kernels and position
# embeddings, N(0, 0.01) token embeddings, zero biases, unit LayerNorm scales.
TOKEN_EMBEDDING_STDDEV = 0.01
KERNEL_STDDEV = 0.02


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """A GPT-2 shape: `intermediate_dim` is 4 * `hidden_dim` as in GPT-2."""

    num_layers: int
    hidden_dim: int
    num_heads: int

    @property
    def intermediate_dim(self):
        return 4 * self.hidden_dim


CAUSAL_LMS.register("gpt_tiny", GPTConfig(num_layers=2, hidden_dim=128, num_heads=2))
CAUSAL_LMS.register("gpt_small", GPTConfig(num_layers=4, hidden_dim=256, num_heads=4))


def gpt2_causal_lm(
    vocabulary_size,
    num_layers,
    hidden_dim,
    num_heads,
    sequence_length,
    dropout=0.0,
    seed=None,
    name=None,
):
    """A KerasHub `GPT2CausalLM` (no preprocessor) from a config; its feed-forward layers are
    4 * `hidden_dim` wide, as GPT-2's.

    Args:
      vocabulary_size: number of token ids (the data's tokenizer's), >= 2.
      num_layers, hidden_dim, num_heads: the transformer's shape; `hidden_dim` divisible by
        `num_heads`.
      sequence_length: the longest input the position embedding covers.
      dropout: dropout rate of the embeddings and every transformer layer.
      seed: when given, every weight is drawn from GPT-2's initial distributions with a NumPy
        generator seeded by it, so two builds with the same seed are identical; Keras's global
        random state is not touched.
      name: the model's name.

    Returns:
      A built `keras_hub.models.GPT2CausalLM`: {"token_ids", "padding_mask"} int32 [batch, time]
      -> logits float32 [batch, time, vocabulary_size].
    """
    import keras_hub

    if not isinstance(vocabulary_size, (int, np.integer)) or vocabulary_size < 2:
        raise ValueError(f"vocabulary_size must be an integer >= 2; got {vocabulary_size!r}")
    if hidden_dim % num_heads:
        raise ValueError(f"hidden_dim ({hidden_dim}) must be divisible by num_heads ({num_heads})")
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=int(vocabulary_size),
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        intermediate_dim=GPTConfig(num_layers, hidden_dim, num_heads).intermediate_dim,
        dropout=dropout,
        max_sequence_length=int(sequence_length),
    )
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None, name=name)
    if seed is not None:
        reinitialize(model, seed)
    return model


def reinitialize(model, seed):
    """Redraws every weight of a GPT-2 from its initial distributions with NumPy's seeded
    generator (in the order of `model.weights`)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        path = variable.path
        shape = tuple(variable.shape)
        if path.endswith(("gamma", "scale")):
            value = np.ones(shape)
        elif path.endswith(("beta", "bias")):
            value = np.zeros(shape)
        else:
            stddev = TOKEN_EMBEDDING_STDDEV if "token_embedding" in path else KERNEL_STDDEV
            value = rng.normal(0.0, stddev, shape)
        variable.assign(value.astype(variable.dtype))


def build_causal_lm(name, vocabulary_size, sequence_length, dropout=0.0, seed=None):
    """The registered causal LM `name` (see `causal_lm_names()`) for a vocabulary and length."""
    config = CAUSAL_LMS.get(name)
    return gpt2_causal_lm(
        vocabulary_size,
        config.num_layers,
        config.hidden_dim,
        config.num_heads,
        sequence_length,
        dropout=dropout,
        seed=seed,
        name=name,
    )


def causal_lm_names():
    """Sorted names of the registered causal LMs."""
    return CAUSAL_LMS.names()


def gpt2_parameter_count(
    vocabulary_size, num_layers, hidden_dim, sequence_length, intermediate_dim=None
):
    """GPT-2's parameter count with tied input/output embeddings, from its equations.

    Embeddings V*H + S*H; per layer, attention 4 (H*H + H) (query, key, value, output with
    biases), two LayerNorms 2 * 2H and the feed-forward H*I + I + I*H + H; a final LayerNorm 2H.
    """
    hidden, inner = hidden_dim, intermediate_dim or 4 * hidden_dim
    per_layer = 4 * (hidden * hidden + hidden) + 4 * hidden + 2 * hidden * inner + inner + hidden
    return (vocabulary_size + sequence_length) * hidden + num_layers * per_layer + 2 * hidden


def load_causal_lm(spec, vocabulary_size=None, sequence_length=None, seed=None, dropout=0.0):
    """A causal LM from a registered name, `preset:DIR` (a local KerasHub preset) or a `.keras`
    file; `vocabulary_size` and `sequence_length` are needed for a name only.

    Raises:
      ValueError naming the spec when it is none of these, or when the loaded model's vocabulary
      differs from `vocabulary_size`.
    """
    if spec in CAUSAL_LMS:
        return build_causal_lm(spec, vocabulary_size, sequence_length, dropout=dropout, seed=seed)
    if spec.startswith("preset:"):
        import keras_hub

        directory = os.path.expanduser(spec[len("preset:") :])
        if not os.path.isdir(directory):
            raise ValueError(f"causal LM {spec!r}: preset directory {directory!r} does not exist")
        model = keras_hub.models.CausalLM.from_preset(directory, preprocessor=None)
    elif spec.endswith(".keras") and os.path.isfile(spec):
        import keras
        import keras_hub  # noqa: F401  (registers the KerasHub classes for deserialisation)

        model = keras.saving.load_model(spec)
    else:
        known = ", ".join(causal_lm_names())
        raise ValueError(
            f"causal LM {spec!r} is not a registered name ({known}), preset:DIR "
            "or an existing .keras file"
        )
    found = model.output_shape[-1] if hasattr(model, "output_shape") else None
    if vocabulary_size is not None and found is not None and found != vocabulary_size:
        raise ValueError(
            f"causal LM {spec!r} has a vocabulary of {found} tokens; the data's "
            f"tokenizer has {vocabulary_size}"
        )
    return model
