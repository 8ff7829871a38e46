"""--precision=mixed_bfloat16: bfloat16 compute for the trained models, float32 weights, logits,
saved and exported students."""

import os

import keras
import numpy as np
import pytest
from cli_helpers import run_distill

import tfkd
from tfkd import training
from tfkd.experiment import RunConfig, fitting

TINY = [
    "--dataset=synthetic",
    "--synthetic_size=600",
    "--synthetic_dim=12",
    "--synthetic_classes=4",
    "--synthetic_superclasses=2",
    "--teacher=mlp",
    "--teacher_epochs=2",
    "--student=mlp_small",
    "--epochs=3",
    "--batch_size=64",
    "--optimizer=adam",
    "--learning_rate=0.01",
    "--verbose=0",
    "--export=keras",
    "--deterministic",
]
MIXED_TOLERANCE = 0.5


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


def _relative_difference(first, second):
    return max(
        float(np.max(np.abs(a - b))) / float(np.max(np.abs(b))) for a, b in zip(first, second)
    )


def test_run_with_mixed_precision_saves_a_float32_student(tmp_path, monkeypatch):
    built, build = [], fitting.build_model

    def recording(arch, bundle, strategy, precision="float32"):
        model = build(arch, bundle, strategy, precision)
        built.append((arch, precision, model))
        return model

    monkeypatch.setattr(fitting, "build_model", recording)
    out = str(tmp_path / "mixed")
    results = run_distill(
        [*TINY, "--precision=mixed_bfloat16", f"--output_dir={out}", "--baseline"]
    )
    # The teacher, the student and the baseline were trained by models computing in bfloat16.
    mixed = [(arch, model) for arch, precision, model in built if precision == "mixed_bfloat16"]
    assert [arch for arch, _ in mixed].count("mlp") == 1
    assert [arch for arch, _ in mixed].count("mlp_small") >= 3  # dry build, student, baseline
    assert all(
        model.get_layer(tfkd.models.FEATURES).compute_dtype == "bfloat16" for _, model in mixed
    )
    student = keras.saving.load_model(os.path.join(out, "student.keras"))
    assert any(
        all(np.array_equal(a, b) for a, b in zip(model.get_weights(), student.get_weights()))
        for _, model in mixed
    )  # the saved student is one of them, converted
    assert student.dtype_policy.name == "float32"
    assert all(layer.compute_dtype == "float32" for layer in student.layers)
    assert results["flags"]["precision"] == "mixed_bfloat16"
    # The same run in float32 ends elsewhere, though not far: bfloat16 keeps 8 bits of mantissa.
    monkeypatch.setattr(fitting, "build_model", build)
    reference = tmp_path / "float32"
    expected = run_distill([*TINY, f"--output_dir={reference}", "--baseline"])
    float32 = keras.saving.load_model(reference / "student.keras")
    difference = _relative_difference(student.get_weights(), float32.get_weights())
    assert 1e-3 < difference < MIXED_TOLERANCE, difference
    for role in ("teacher", "student", "baseline"):
        assert abs(results[role]["accuracy"] - expected[role]["accuracy"]) <= 0.1, role


def test_a_bad_precision_is_refused_by_flag_and_by_argument():
    with pytest.raises(ValueError, match="--precision=float16: value should be one of"):
        RunConfig.from_flags([*TINY, "--precision=float16"])
    # The Python argument is named as the field, the command line's as the flag.
    with pytest.raises(ValueError, match="^precision must be one of float32, mixed_bfloat16"):
        training.TrainConfig(precision="float16")
