import keras
import numpy as np
import pytest

from tfkd import models
from tfkd.exporting import student as export
from tfkd.teacher import loading


@pytest.fixture(scope="module")
def model():
    return models.build(
        "mlp_small",
        input_shape=(6,),
        num_classes=3,
        mean=np.full(6, 0.5, np.float32),
        variance=np.full(6, 2.0, np.float32),
    )


def test_keras_file_and_saved_model_folder_load_as_the_same_function(model, tmp_path):
    x = np.random.default_rng(0).normal(size=(9, 6)).astype("float32")
    export.save_keras(model, str(tmp_path / "t.keras"))
    export.save_saved_model(model, str(tmp_path / "sm"))
    want = model.predict(x, verbose=0)
    for path in (tmp_path / "t.keras", tmp_path / "sm"):
        loaded = loading.load_model(str(path))
        assert loaded.output_shape == (None, 3)
        np.testing.assert_allclose(loaded.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)


def test_rescale_inputs_multiplies_before_the_model(model):
    x = np.random.default_rng(1).random((4, 6)).astype("float32")
    scaled = loading.rescale_inputs(model, 255.0)
    np.testing.assert_allclose(
        scaled.predict(x, verbose=0), model.predict(x * 255, verbose=0), rtol=1e-5
    )


@pytest.mark.parametrize(
    "name,content", [("missing.keras", None), ("text.keras", "hello"), ("folder", "dir")]
)
def test_not_a_model_is_one_clear_error(tmp_path, name, content):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match="--teacher"):
        loading.load_model(str(path))


def _lambda_model():
    inputs = keras.Input((6,))
    doubled = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    return keras.Model(inputs, keras.layers.Dense(3)(doubled))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_file_needing_unsafe_deserialization_is_refused_with_one_line(tmp_path, suffix):
    path = str(tmp_path / f"lambda{suffix}")
    _lambda_model().save(path)
    with pytest.raises(ValueError, match="needs unsafe deserialization") as error:
        loading.load_model(path, flag="--teachers")
    message = str(error.value)
    assert "\n" not in message
    assert message == (
        f"--teachers: {path} needs unsafe deserialization (a Lambda layer runs arbitrary code); "
        "tfkd loads .keras files with safe_mode=True. Re-save it without Lambda layers, or load "
        f"it yourself with keras.saving.load_model('{path}', safe_mode=False) and pass the model"
    )
    # The way out the message gives works.
    assert keras.saving.load_model(path, safe_mode=False, compile=False).output_shape == (None, 3)


# The smallest member of every model family: each family's members share their layer types.
ONE_PER_FAMILY = ("mlp_small", "cnn_small", "resnet8", "vgg8", "wrn_16_1", "mobilenetv2")


def test_one_model_per_family_covers_every_family():
    def family(name):
        return models.MODELS.get(name).body.__module__

    assert {family(name) for name in ONE_PER_FAMILY} == {family(name) for name in models.names()}


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_zoo_models_load_in_safe_mode(name, tmp_path):
    rank = models.MODELS.get(name).input_rank
    shape = (32, 32, 3) if rank == 3 else (6,)
    model = models.build(
        name,
        shape,
        5,
        mean=np.full(shape[-1], 0.4, np.float32),
        variance=np.full(shape[-1], 2.0, np.float32),
        seed=0,
    )
    path = str(tmp_path / f"{name}.keras")
    export.save_keras(model, path)
    loaded = loading.load_model(path)
    x = np.random.default_rng(2).random((2, *shape)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-5, atol=1e-6)
    assert loaded.get_layer(models.NORMALIZATION).get_config()["mean"] is not None


class SubclassedDense(keras.Model):
    def __init__(self, eager_only=False, **kwargs):
        super().__init__(**kwargs)
        self.eager_only = eager_only
        self.dense = keras.layers.Dense(3)

    def call(self, inputs):
        if self.eager_only:  # a call that symbolic tracing cannot follow
            inputs = np.asarray(inputs)
        return self.dense(inputs)


def _built(model):
    model(np.zeros((4, 6), np.float32))
    return model


@pytest.mark.parametrize(
    "make",
    [
        lambda: keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)]),
        lambda: _built(keras.Sequential([keras.layers.Dense(3)])),
        lambda: _built(SubclassedDense()),
        lambda: _built(SubclassedDense(eager_only=True)),
    ],
    ids=["sequential", "sequential_without_input", "subclassed", "subclassed_eager_only"],
)
def test_every_kind_of_built_model_reports_its_shapes(make):
    model = make()
    assert loading.known_input_shape(model) == (None, 6)
    assert loading.known_output_shape(model) == (None, 3)


def test_a_model_never_called_reports_nothing():
    assert loading.known_input_shape(SubclassedDense()) is None
    assert loading.known_output_shape(SubclassedDense()) is None


def test_rescale_inputs_wraps_subclassed_models():
    x = np.random.default_rng(1).random((4, 6)).astype("float32")
    for model in (_built(SubclassedDense()), SubclassedDense()):
        scaled = loading.rescale_inputs(model, 255.0)
        np.testing.assert_allclose(
            scaled.predict(x, verbose=0), model.predict(x * 255, verbose=0), rtol=1e-5
        )
