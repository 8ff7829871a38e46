"""--precision=mixed_bfloat16: bfloat16 compute for the trained models, float32 weights, logits,
saved and exported students."""
import os

import keras
import numpy as np
import pytest

import tfkd
from tfkd import training
from tfkd.experiment import RunConfig
from cli_helpers import run_distill

TINY = ["--dataset=synthetic", "--synthetic_size=600", "--synthetic_dim=12",
        "--synthetic_classes=4", "--synthetic_superclasses=2", "--teacher=mlp",
        "--teacher_epochs=2", "--student=mlp_small", "--epochs=3", "--batch_size=64",
        "--optimizer=adam", "--learning_rate=0.01", "--verbose=0", "--export=keras",
        "--deterministic"]


@pytest.mark.parametrize("arch,shape", [("resnet8", (16, 16, 3)), ("mlp_small", (12,))])
def test_models_built_mixed_compute_in_bfloat16_and_return_float32_logits(arch, shape):
    with training.precision_policy("mixed_bfloat16"):
        model = tfkd.models.build(arch, shape, 5, seed=1)
    assert keras.config.dtype_policy().name == "float32"  # restored
    assert model.get_layer(tfkd.models.FEATURES).compute_dtype == "bfloat16"
    assert all(w.dtype == "float32" for w in model.weights)
    logits = model(np.random.default_rng(0).random((4, *shape), dtype="float32"))
    assert logits.dtype == "float32"


def test_a_mixed_kd_step_follows_the_float32_step():
    """Same initial weights, same batch: the bfloat16 step's losses and updated weights agree
    with float32 to bfloat16's precision, and the step moved the weights."""
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 12), dtype="float32"), rng.integers(0, 4, 64)
    teacher = tfkd.models.build("mlp", (12,), 4, seed=2)
    initial = tfkd.models.build("mlp_small", (12,), 4, seed=3).get_weights()
    results = {}
    for precision in training.PRECISIONS:
        with training.precision_policy(precision):
            student = tfkd.models.build("mlp_small", (12,), 4, seed=3)
        student.set_weights(initial)
        distiller = tfkd.Distiller(student, teacher, temperature=4.0, alpha=0.9)
        distiller.compile(optimizer=keras.optimizers.SGD(0.5))
        logs = distiller.train_on_batch(x, y, return_dict=True)
        results[precision] = logs, student.get_weights()
    (logs32, weights32), (logs16, weights16) = results["float32"], results["mixed_bfloat16"]
    np.testing.assert_allclose(logs16["loss"], logs32["loss"], rtol=2e-2)
    moved = max(np.abs(w - w0).max() for w, w0 in zip(weights32, initial))
    assert moved > 1e-3
    for w16, w32 in zip(weights16, weights32):
        np.testing.assert_allclose(w16, w32, atol=0.05 * moved)


def test_run_with_mixed_precision_saves_a_float32_student(tmp_path):
    out = str(tmp_path / "mixed")
    results = run_distill([*TINY, "--precision=mixed_bfloat16", f"--output_dir={out}",
                           "--baseline"])
    student = keras.saving.load_model(os.path.join(out, "student.keras"))
    assert student.dtype_policy.name == "float32"
    assert all(layer.compute_dtype == "float32" for layer in student.layers)
    assert results["flags"]["precision"] == "mixed_bfloat16"
    assert np.isfinite(results["student"]["accuracy"])
    assert np.isfinite(results["baseline"]["accuracy"])


def test_a_bad_precision_is_refused_by_flag_and_by_argument():
    with pytest.raises(ValueError, match="--precision=float16: value should be one of"):
        RunConfig.from_flags([*TINY, "--precision=float16"])
    with pytest.raises(ValueError, match="--precision must be one of float32, mixed_bfloat16"):
        training.TrainConfig(precision="float16")
