"""Student export round trips: .keras, SavedModel and float32 TFLite."""
import os

import keras
import numpy as np
import pytest

from tfkd import export, models


@pytest.fixture(scope="module")
def student():
    rng = np.random.default_rng(0)
    model = models.build("cnn_small", input_shape=(12, 12, 1), num_classes=5,
                         mean=np.array([0.4], np.float32), variance=np.array([0.09], np.float32))
    x = rng.random((64, 12, 12, 1), dtype=np.float32)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, rng.integers(0, 5, 64), epochs=1, verbose=0)  # non-trivial BatchNorm statistics
    return model


@pytest.fixture(scope="module")
def exported(student, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("export"))
    rng = np.random.default_rng(1)
    x, y = rng.random((40, 12, 12, 1), dtype=np.float32), rng.integers(0, 5, 40)
    return out, export.export_student(student, out, export.FORMATS, test_data=(x, y),
                                      verbose=False), (x, y)


def test_keras_round_trip_is_exact(student, exported):
    out, exports, (x, _) = exported
    reloaded = keras.saving.load_model(os.path.join(out, exports["keras"]))
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), student.predict(x, verbose=0))


def test_saved_model_round_trip_and_new_batch_size(student, exported):
    out, exports, (x, _) = exported
    path = os.path.join(out, exports["savedmodel"])
    np.testing.assert_allclose(export.saved_model_predict(path, x), student.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    for batch in (1, 7):
        np.testing.assert_allclose(export.saved_model_predict(path, x[:batch]),
                                   student.predict(x[:batch], verbose=0), rtol=1e-5, atol=1e-6)


def test_tflite_matches_keras(student, exported):
    out, exports, (x, y) = exported
    got = export.tflite_predict(os.path.join(out, exports["tflite"]), x, batch_size=16)
    want = student.predict(x, verbose=0)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert exports["tflite_agreement"] == 1.0
    assert exports["tflite_accuracy"] == pytest.approx(np.mean(np.argmax(want, -1) == y))


def test_unknown_format_names_the_flag():
    with pytest.raises(ValueError, match="--export.*onnx.*known"):
        export.check_formats(["keras", "onnx"])


def test_failed_write_leaves_the_old_file(tmp_path, student):
    target = tmp_path / "student.keras"
    target.write_text("previous")

    class Broken:
        def save(self, path):
            with open(path, "w") as handle:
                handle.write("half")
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        export.save_keras(Broken(), str(target))
    assert target.read_text() == "previous"
    assert os.listdir(tmp_path) == ["student.keras"]
