import numpy as np
import pytest

from tfkd import export, models, teachers


@pytest.fixture(scope="module")
def model():
    return models.build("mlp_small", input_shape=(6,), num_classes=3,
                        mean=np.full(6, 0.5, np.float32), variance=np.full(6, 2.0, np.float32))


def test_keras_file_and_saved_model_folder_load_as_the_same_function(model, tmp_path):
    x = np.random.default_rng(0).normal(size=(9, 6)).astype("float32")
    export.save_keras(model, str(tmp_path / "t.keras"))
    export.save_saved_model(model, str(tmp_path / "sm"))
    want = model.predict(x, verbose=0)
    for path in (tmp_path / "t.keras", tmp_path / "sm"):
        loaded = teachers.load_model(str(path))
        assert loaded.output_shape == (None, 3)
        np.testing.assert_allclose(loaded.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)


def test_rescale_inputs_multiplies_before_the_model(model):
    x = np.random.default_rng(1).random((4, 6)).astype("float32")
    scaled = teachers.rescale_inputs(model, 255.0)
    np.testing.assert_allclose(scaled.predict(x, verbose=0), model.predict(x * 255, verbose=0),
                               rtol=1e-5)


@pytest.mark.parametrize("name,content", [("missing.keras", None), ("text.keras", "hello"),
                                          ("folder", "dir")])
def test_not_a_model_is_one_clear_error(tmp_path, name, content):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match="--teacher"):
        teachers.load_model(str(path))
