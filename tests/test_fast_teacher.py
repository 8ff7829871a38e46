"""Folded batch norm, bfloat16 teachers and the soft-target check (tfkd.teacher.serving)."""

import keras
import numpy as np
import pytest

import tfkd
from tfkd.teacher import serving


def _trained(name, input_shape=(16, 16, 3), classes=5, steps=3, seed=0):
    """A zoo model after a few SGD steps, so batch norm statistics are far from (0, 1)."""
    rng = np.random.default_rng(seed)
    model = tfkd.models.build(name, input_shape, classes, seed=seed)
    x = rng.uniform(size=(16 * steps, *input_shape)).astype("float32")
    y = rng.integers(0, classes, len(x))
    model.compile(
        keras.optimizers.SGD(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    return model, rng.uniform(size=(8, *input_shape)).astype("float32")


def _batch_norms(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def _relative_error(reference, other):
    return np.abs(np.asarray(other) - reference).max() / np.abs(reference).max()


@pytest.mark.parametrize("name", ["resnet8", "wrn_16_1", "vgg8", "mobilenetv2", "cnn_small"])
def test_folded_model_gives_the_same_logits_and_leaves_the_original_alone(name):
    model, x = _trained(name)
    moving = [bn.moving_variance.numpy() for bn in _batch_norms(model)]
    assert not all(np.allclose(v, 1.0) for v in moving)  # the statistics moved
    before = [w.copy() for w in model.get_weights()]
    folded = serving.fold_batch_norm(model)
    reference = model(x, training=False).numpy()
    assert _relative_error(reference, folded(x, training=False)) <= serving.FOLD_TOLERANCE
    assert len(_batch_norms(folded)) < len(_batch_norms(model))
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)
    assert folded.output_shape == model.output_shape


def test_only_batch_norms_right_after_a_foldable_layer_fold():
    """WRN's pre-activation batch norms follow an Add; a conv read by two layers keeps its BN."""
    model, x = _trained("wrn_16_1")
    folded = serving.fold_batch_norm(model)
    kept = {layer.name for layer in _batch_norms(folded)}
    assert "final_bn" in kept and "stage1_block0_bn1" in kept
    assert "stage1_block0_bn2" not in kept  # conv1 -> bn2 folds

    inputs = keras.Input((6, 6, 2))
    conv = keras.layers.Conv2D(3, 3, padding="same", name="shared_conv")(inputs)
    normed = keras.layers.BatchNormalization(name="bn")(conv)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Add()([normed, conv])))
    branchy = keras.Model(inputs, outputs)
    branchy.get_layer("bn").moving_mean.assign([0.5, -1.0, 2.0])
    assert [layer.name for layer in _batch_norms(serving.fold_batch_norm(branchy))] == ["bn"]


def test_dense_then_batch_norm_folds_to_the_numpy_affine_map():
    rng = np.random.default_rng(1)
    inputs = keras.Input((4,))
    outputs = keras.layers.BatchNormalization(epsilon=1e-3, name="bn")(
        keras.layers.Dense(3, name="dense")(inputs)
    )
    model = keras.Model(inputs, outputs)
    kernel, bias = rng.normal(size=(4, 3)), rng.normal(size=3)
    gamma, beta, mean, variance = (
        rng.normal(size=3),
        rng.normal(size=3),
        rng.normal(size=3),
        rng.uniform(0.5, 2, size=3),
    )
    model.get_layer("dense").set_weights([kernel, bias])
    model.get_layer("bn").set_weights([gamma, beta, mean, variance])
    x = rng.normal(size=(5, 4)).astype("float32")
    expected = gamma * (x @ kernel + bias - mean) / np.sqrt(variance + 1e-3) + beta
    folded = serving.fold_batch_norm(model)
    assert not _batch_norms(folded)
    np.testing.assert_allclose(folded(x).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_soft_target_difference_is_the_largest_probability_gap():
    reference = np.array([[0.0, 0.0], [2.0, 0.0]])
    fast = np.array([[0.0, 0.0], [0.0, 0.0]])
    gap = np.exp(1.0) / (np.exp(1.0) + 1.0) - 0.5  # softmax([2, 0] / 2)[0] - 1/2
    assert serving.soft_target_difference(reference, fast, 2.0) == pytest.approx(gap)
    assert serving.check_soft_targets(reference, fast, 2.0, gap + 1e-9) == pytest.approx(gap)
    with pytest.raises(ValueError, match="max \\|softmax"):
        serving.check_soft_targets(reference, fast, 2.0, gap - 1e-6)


def test_bfloat16_teacher_is_checked_and_fails_loudly_past_the_tolerance():
    model, x = _trained("cnn_small")
    fast = serving.fast_teacher(model, "bfloat16", check_inputs=x, temperature=4.0)
    assert fast.get_layer("conv0").dtype_policy.name == "bfloat16"
    assert fast.output.dtype == "float32"
    difference = serving.soft_target_difference(
        model.predict(x, verbose=0), fast.predict(x, verbose=0), 4.0
    )
    assert 0 < difference <= serving.BFLOAT16_TOLERANCE
    with pytest.raises(ValueError, match="exceeds the tolerance 0"):
        serving.fast_teacher(model, "bfloat16", check_inputs=x, tolerance=0.0)


def test_bad_arguments_are_named():
    model, _ = _trained("cnn_small", steps=1)
    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16"):
        serving.fast_teacher(model, "float16")

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="model must be a functional keras.Model"):
        serving.fold_batch_norm(Subclassed())
