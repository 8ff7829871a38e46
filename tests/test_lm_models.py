"""GPT-style causal LMs of the zoo: shapes, parameter counts from GPT-2's equations, seeding."""

import numpy as np
import pytest

from tfkd.models import gpt as lm

VOCABULARY, LENGTH = 64, 12


def _count_by_hand(vocabulary, layers, hidden, length):
    """GPT-2 with tied embeddings, counted matrix by matrix (Radford et al. 2019, Fig. 1 of
    Vaswani et al. 2017 with pre-LayerNorm)."""
    inner = 4 * hidden
    embeddings = vocabulary * hidden + length * hidden
    attention = 3 * (hidden * hidden + hidden) + (hidden * hidden + hidden)
    feed_forward = (hidden * inner + inner) + (inner * hidden + hidden)
    layer_norms = 2 * (2 * hidden)
    return embeddings + layers * (attention + feed_forward + layer_norms) + 2 * hidden


@pytest.mark.parametrize("name, layers, hidden", [("gpt_tiny", 2, 128), ("gpt_small", 4, 256)])
def test_zoo_configs_and_parameter_counts(name, layers, hidden):
    config = lm.CAUSAL_LMS.get(name)
    assert (config.num_layers, config.hidden_dim) == (layers, hidden)
    expected = _count_by_hand(259, layers, hidden, 128)
    assert lm.gpt2_parameter_count(259, layers, hidden, 128) == expected
    assert lm.build_causal_lm(name, 259, 128).count_params() == expected


def test_gpt_tiny_parameter_count_is_exact_number():
    # 259 * 128 + 128 * 128 + 2 * (4 * (128^2 + 128) + 4 * 128 + 2 * 128 * 512 + 512 + 128)
    # + 2 * 128
    assert lm.gpt2_parameter_count(259, 2, 128, 128) == 446336


def test_small_model_logits_shape_and_seeding():
    import keras_hub

    model = lm.gpt2_causal_lm(VOCABULARY, 1, 16, 2, LENGTH, seed=3)
    assert isinstance(model, keras_hub.models.GPT2CausalLM) and model.preprocessor is None
    assert model.count_params() == _count_by_hand(VOCABULARY, 1, 16, LENGTH)
    inputs = {
        "token_ids": np.arange(10, dtype="int32").reshape(2, 5),
        "padding_mask": np.ones((2, 5), "int32"),
    }
    assert tuple(model(inputs).shape) == (2, 5, VOCABULARY)
    same = lm.gpt2_causal_lm(VOCABULARY, 1, 16, 2, LENGTH, seed=3)
    other = lm.gpt2_causal_lm(VOCABULARY, 1, 16, 2, LENGTH, seed=4)
    for a, b in zip(model.get_weights(), same.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(model.get_weights(), other.get_weights()))
    embedding = model.backbone.token_embedding.embeddings.numpy()
    assert abs(embedding.std() - lm.TOKEN_EMBEDDING_STDDEV) < 0.002


def test_bad_inputs_are_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="vocabulary_size must be an integer >= 2"):
        lm.gpt2_causal_lm(1, 1, 16, 2, LENGTH)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        lm.gpt2_causal_lm(VOCABULARY, 1, 16, 3, LENGTH)
    with pytest.raises(ValueError, match="causal language model 'gpt_huge' is not registered"):
        lm.build_causal_lm("gpt_huge", VOCABULARY, LENGTH)
    with pytest.raises(ValueError, match="not a registered name"):
        lm.load_causal_lm(str(tmp_path / "missing.keras"))


def test_keras_file_reloads_and_vocabulary_is_checked(tmp_path):
    model = lm.gpt2_causal_lm(VOCABULARY, 1, 16, 2, LENGTH, seed=0)
    path = str(tmp_path / "lm.keras")
    model.save(path)
    reloaded = lm.load_causal_lm(path, vocabulary_size=VOCABULARY)
    inputs = {"token_ids": np.ones((1, 4), "int32"), "padding_mask": np.ones((1, 4), "int32")}
    np.testing.assert_allclose(reloaded(inputs), model(inputs), atol=1e-6)
    with pytest.raises(
        ValueError, match="has a vocabulary of 64 tokens; the data's tokenizer has 259"
    ):
        lm.load_causal_lm(path, vocabulary_size=259)


def test_the_zoo_package_exposes_the_causal_lms():
    import tfkd.models

    assert tfkd.models.causal_lm_names() == ["gpt_small", "gpt_tiny"]
    assert tfkd.models.build_causal_lm is lm.build_causal_lm
