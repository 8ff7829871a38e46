"""Tests for the model zoo: shapes, reference parameter counts, layer names, head, saving."""

import functools

import keras
import numpy as np
import pytest

from tfkd import models

NUM_CLASSES = 100
IMAGE_SHAPE = (32, 32, 3)
VECTOR_SHAPE = (20,)

# Trainable parameters of the PyTorch definitions in HobbitLong/RepDistiller models/*.py with
# num_classes=100 (BatchNorm counts gamma and beta; running statistics are buffers there and
# non-trainable weights here). Derived layer by layer from those files; they agree with the
# commonly quoted sizes (resnet20 0.28M, resnet56 0.86M, resnet110 1.7M, resnet32x4 7.4M,
# wrn_40_2 2.26M, vgg13 9.5M, mobile_half 0.81M). "mobilenetv2" is RepDistiller's mobile_half.
REFERENCE_TRAINABLE_PARAMETERS = {
    "resnet8": 83_892,
    "resnet20": 278_324,
    "resnet56": 861_620,
    "resnet110": 1_736_564,
    "resnet8x4": 1_233_540,
    "resnet32x4": 7_433_860,
    "wrn_16_2": 703_284,
    "wrn_40_1": 569_780,
    "wrn_40_2": 2_255_156,
    "vgg8": 3_965_028,
    "vgg13": 9_462_180,
    "mobilenetv2": 812_836,
}

REQUIRED_NAMES = {
    "resnet8",
    "resnet14",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "resnet8x4",
    "resnet32x4",
    "wrn_16_2",
    "wrn_40_1",
    "wrn_40_2",
    "vgg8",
    "vgg13",
    "mobilenetv2",
    "mlp",
    "mlp_small",
    "mlp_large",
    "cnn_small",
    "cnn_large",
}


def _is_mlp(name):
    return models.MODELS.get(name).input_rank == 1


def _example_shape(name):
    return VECTOR_SHAPE if _is_mlp(name) else IMAGE_SHAPE


@functools.lru_cache(maxsize=None)
def _built(name):
    """Each model is built once for the whole file (seeded so the numbers are repeatable)."""
    return models.build(name, _example_shape(name), NUM_CLASSES, seed=0)


def _trainable_parameters(model):
    return sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)


def test_required_models_are_registered():
    assert REQUIRED_NAMES <= set(models.names())
    assert models.names() == sorted(models.names())


@pytest.mark.parametrize("name", models.names())
def test_model_layout_and_head_agree_with_logits(name):
    model = _built(name)
    assert model.layers[1].name == "normalization"
    assert isinstance(model.layers[1], keras.layers.Normalization)
    layer_names = [layer.name for layer in model.layers]
    features_index = layer_names.index("features")
    assert layer_names[features_index + 1 :] == ["pooled", "classifier"]
    assert isinstance(model.get_layer("classifier"), keras.layers.Dense)

    inputs = np.random.default_rng(0).uniform(size=(2, *_example_shape(name))).astype("float32")
    features, logits = models.feature_extractor(model)(inputs)
    assert tuple(logits.shape) == (2, NUM_CLASSES)
    assert tuple(features.shape)[1:] == tuple(model.get_layer("features").output.shape)[1:]
    np.testing.assert_allclose(model.predict_on_batch(inputs), logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(models.head(model)(features), logits, rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(logits)) and np.std(np.asarray(logits)) > 0


def _conv(inputs, outputs, kernel, bias=False):
    return inputs * outputs * kernel * kernel + (outputs if bias else 0)


def _batch_norm(channels):
    return 2 * channels  # gamma and beta


def _resnet(depth, widths=(16, 16, 32, 64)):
    """RepDistiller's CIFAR ResNet: a 3x3 stem, (depth - 2) / 6 basic blocks per stage, a 1x1
    projection where the width changes, no conv biases."""
    blocks, channels = (depth - 2) // 6, widths[0]
    total = _conv(3, channels, 3) + _batch_norm(channels)
    for width in widths[1:]:
        for _ in range(blocks):
            total += _conv(channels, width, 3) + _conv(width, width, 3) + 2 * _batch_norm(width)
            if channels != width:
                total += _conv(channels, width, 1) + _batch_norm(width)
            channels = width
    return total + channels * NUM_CLASSES + NUM_CLASSES


def _wide_resnet(depth, factor):
    """Pre-activation blocks (BN, conv, BN, conv), a bias-free 1x1 shortcut where the width
    changes, a final BN."""
    blocks, channels = (depth - 4) // 6, 16
    total = _conv(3, channels, 3)
    for width in (16 * factor, 32 * factor, 64 * factor):
        for _ in range(blocks):
            total += _batch_norm(channels) + _conv(channels, width, 3) + _batch_norm(width)
            total += _conv(width, width, 3) + (
                _conv(channels, width, 1) if channels != width else 0
            )
            channels = width
    return total + _batch_norm(channels) + channels * NUM_CLASSES + NUM_CLASSES


def _vgg(stages):
    """3x3 convs with biases, each followed by BN; one linear layer."""
    total, channels = 0, 3
    for stage in stages:
        for width in stage:
            total += _conv(channels, width, 3, bias=True) + _batch_norm(width)
            channels = width
    return total + channels * NUM_CLASSES + NUM_CLASSES


def _mobile_half(expansion=6):
    """MobileNetV2 at width 0.5: inverted residuals (1x1 expand, 3x3 depthwise, 1x1 project,
    each with BN; the expand conv is kept at t = 1), a 1x1 conv to 1280, one linear layer."""
    settings = [
        (1, 16, 1),
        (expansion, 24, 2),
        (expansion, 32, 3),
        (expansion, 64, 4),
        (expansion, 96, 3),
        (expansion, 160, 3),
        (expansion, 320, 1),
    ]
    channels = 16
    total = _conv(3, channels, 3) + _batch_norm(channels)
    for factor, width, repeats in settings:
        for _ in range(repeats):
            hidden, width_half = channels * factor, width // 2
            total += _conv(channels, hidden, 1) + 9 * hidden + 2 * _batch_norm(hidden)
            total += _conv(hidden, width_half, 1) + _batch_norm(width_half)
            channels = width_half
    total += _conv(channels, 1280, 1) + _batch_norm(1280)
    return total + 1280 * NUM_CLASSES + NUM_CLASSES


ARITHMETIC = {
    "resnet8": _resnet(8),
    "resnet20": _resnet(20),
    "resnet56": _resnet(56),
    "resnet110": _resnet(110),
    "resnet8x4": _resnet(8, (32, 64, 128, 256)),
    "resnet32x4": _resnet(32, (32, 64, 128, 256)),
    "wrn_16_2": _wide_resnet(16, 2),
    "wrn_40_1": _wide_resnet(40, 1),
    "wrn_40_2": _wide_resnet(40, 2),
    "vgg8": _vgg([[64], [128], [256], [512], [512]]),
    "vgg13": _vgg([[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]]),
    "mobilenetv2": _mobile_half(),
}


@pytest.mark.parametrize("name", sorted(REFERENCE_TRAINABLE_PARAMETERS))
def test_parameter_count_matches_reference(name):
    reference = REFERENCE_TRAINABLE_PARAMETERS[name]
    assert ARITHMETIC[name] == reference
    assert _trainable_parameters(_built(name)) == reference


def test_conv_models_accept_28x28_grey_images():
    for name in models.names():
        if _is_mlp(name):
            continue
        model = models.build(name, (28, 28, 1), 10)
        assert tuple(model.output.shape) == (None, 10), name
        height, width = model.get_layer("features").output.shape[1:3]
        assert height >= 1 and width >= 1, name
    logits = models.build("cnn_small", (28, 28, 1), 10)(np.zeros((3, 28, 28, 1), "float32"))
    assert tuple(logits.shape) == (3, 10)


def test_feature_map_shapes_follow_reference_strides():
    assert tuple(_built("resnet20").get_layer("features").output.shape) == (None, 8, 8, 64)
    assert tuple(_built("resnet32x4").get_layer("features").output.shape) == (None, 8, 8, 256)
    assert tuple(_built("wrn_40_2").get_layer("features").output.shape) == (None, 8, 8, 128)
    assert tuple(_built("vgg13").get_layer("features").output.shape) == (None, 4, 4, 512)
    assert tuple(_built("mobilenetv2").get_layer("features").output.shape) == (None, 2, 2, 1280)
    assert tuple(_built("mlp").get_layer("features").output.shape) == (None, 256)


def test_head_shares_weights_with_model():
    model = models.build("mlp_small", VECTOR_SHAPE, 3, seed=1)
    model_head = models.head(model)
    classifier = model.get_layer("classifier")
    classifier.kernel.assign(np.zeros(classifier.kernel.shape, "float32"))
    classifier.bias.assign(np.array([1.0, 2.0, 3.0], "float32"))
    features = np.random.default_rng(1).normal(size=(4, 64)).astype("float32")
    np.testing.assert_allclose(model_head(features), np.tile([1.0, 2.0, 3.0], (4, 1)))


def test_save_and_load_round_trip(tmp_path):
    mean, variance = np.array([0.5], "float32"), np.array([0.09], "float32")
    model = models.build("cnn_small", (28, 28, 1), 10, mean=mean, variance=variance, seed=3)
    inputs = np.random.default_rng(2).uniform(size=(4, 28, 28, 1)).astype("float32")
    # A few training steps move the BatchNorm statistics away from their initial values, so the
    # comparison also covers non-trainable state.
    model.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(inputs, np.arange(4) % 10, epochs=2, shuffle=False, verbose=0)
    path = tmp_path / "cnn_small.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    expected = model.predict_on_batch(inputs)
    np.testing.assert_allclose(reloaded.predict_on_batch(inputs), expected, rtol=1e-6, atol=1e-6)
    features, logits = models.feature_extractor(reloaded)(inputs)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(models.head(reloaded)(features), expected, rtol=1e-5, atol=1e-5)


def test_normalization_layer_uses_given_statistics():
    mean = np.array([0.1, 0.2, 0.3], "float32")
    variance = np.array([0.04, 0.25, 1.0], "float32")
    normalized_model = models.build(
        "cnn_small", IMAGE_SHAPE, 5, mean=mean, variance=variance, seed=7
    )
    identity_model = models.build("cnn_small", IMAGE_SHAPE, 5, seed=7)
    images = np.random.default_rng(3).uniform(size=(2, *IMAGE_SHAPE)).astype("float32")
    standardized = (images - mean) / np.sqrt(variance)
    np.testing.assert_allclose(
        normalized_model.get_layer("normalization")(images), standardized, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(identity_model.get_layer("normalization")(images), images)
    np.testing.assert_allclose(
        normalized_model(images), identity_model(standardized), rtol=1e-4, atol=1e-4
    )
    assert not np.allclose(normalized_model(images), identity_model(images), atol=1e-3)


def test_seed_makes_weights_repeatable_and_distinct_per_layer():
    first = models.build("resnet8", IMAGE_SHAPE, 10, seed=11)
    second = models.build("resnet8", IMAGE_SHAPE, 10, seed=11)
    other = models.build("resnet8", IMAGE_SHAPE, 10, seed=12)
    for weight_a, weight_b in zip(first.weights, second.weights):
        np.testing.assert_array_equal(weight_a, weight_b)
    kernel = first.get_layer("stage1_block0_conv1").kernel
    assert not np.array_equal(kernel, other.get_layer("stage1_block0_conv1").kernel)
    # Two equally shaped layers of one seeded model must not share a draw.
    assert not np.array_equal(kernel, first.get_layer("stage1_block0_conv2").kernel)


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="resnet1000") as error:
        models.build("resnet1000", IMAGE_SHAPE, 10)
    assert "resnet20" in str(error.value) and "mlp_small" in str(error.value)


@pytest.mark.parametrize(
    "name, input_shape, num_classes, argument",
    [
        ("resnet8", IMAGE_SHAPE, 1, "num_classes"),
        ("mlp_small", IMAGE_SHAPE, 10, "input_shape"),
        ("cnn_small", VECTOR_SHAPE, 10, "input_shape"),
    ],
)
def test_bad_arguments_raise_value_error(name, input_shape, num_classes, argument):
    with pytest.raises(ValueError, match=argument):
        models.build(name, input_shape, num_classes)


def test_mean_with_wrong_length_is_rejected():
    with pytest.raises(ValueError, match=r"mean must have shape \(3,\)"):
        models.build("cnn_small", IMAGE_SHAPE, 10, mean=[0.5], variance=[1.0, 1.0, 1.0])


def _batch_norm_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


@pytest.mark.parametrize("name", ["resnet8", "wrn_16_2", "vgg8", "mobilenetv2", "cnn_small"])
def test_batch_norm_is_synchronized_exactly_when_built_under_several_replicas(mirrored, name):
    alone = _batch_norm_layers(models.build(name, (16, 16, 3), 4))
    with mirrored.scope():
        replicated = _batch_norm_layers(models.build(name, (16, 16, 3), 4))
    assert alone and not any(layer.synchronized for layer in alone)
    assert len(replicated) == len(alone) and all(layer.synchronized for layer in replicated)


def _one_step(model, weights, x, y):
    model.set_weights(weights)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.train_on_batch(x, y)
    return model.get_weights()


def test_synchronized_model_saves_loads_and_trains_alone_as_the_plain_one(mirrored, tmp_path):
    rng = np.random.default_rng(4)
    x = rng.uniform(size=(8, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 4, 8)
    with mirrored.scope():
        synchronized = models.build("resnet8", (16, 16, 3), 4, seed=5)
    path = tmp_path / "synchronized.keras"
    synchronized.save(path)
    reloaded = keras.models.load_model(path)  # in a single-replica context
    assert all(layer.synchronized for layer in _batch_norm_layers(reloaded))
    for a, b in zip(synchronized.get_weights(), reloaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    plain = models.build("resnet8", (16, 16, 3), 4, seed=5)
    # Inference uses the moving statistics: the same function exactly.
    np.testing.assert_array_equal(reloaded.predict_on_batch(x), plain.predict_on_batch(x))
    # A training step on one replica: E[x^2] - E[x]^2 against tf.nn.moments, equal to rounding.
    initial = plain.get_weights()
    stepped = _one_step(reloaded, initial, x, y)
    expected = _one_step(plain, initial, x, y)
    moved = max(np.abs(a - b).max() for a, b in zip(expected, initial))
    assert moved > 1e-2
    difference = max(np.abs(a - b).max() / np.abs(b).max() for a, b in zip(stepped, expected))
    print(f"synchronized vs plain BatchNorm, one replica: max relative difference {difference:.2e}")
    assert difference <= 1e-5
