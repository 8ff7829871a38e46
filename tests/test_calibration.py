"""tfkd.calibration, tfkd.reliability and the `calibrated` target, against NumPy written from
the equations."""

import math
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfkd
from tfkd import calibration, reliability, targets
from tfkd.calibration import TemperatureScaling
from tfkd.exporting import student as export


# ---- independent NumPy references ---------------------------------------------------------------
def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _reference_ece(probs, labels, num_bins):
    """Guo et al. Eq.: bins ((m-1)/M, m/M], a loop over bins with explicit masks."""
    confidence, predicted = probs.max(1), probs.argmax(1)
    total = 0.0
    for m in range(num_bins):
        low, high = m / num_bins, (m + 1) / num_bins
        mask = (confidence > low) & (confidence <= high)
        if m == 0:
            mask |= confidence == 0
        if mask.any():
            accuracy = np.mean(predicted[mask] == labels[mask])
            total += mask.sum() / len(labels) * abs(accuracy - confidence[mask].mean())
    return total


def _reference_classwise_ece(probs, labels, num_bins):
    per_class = []
    for k in range(probs.shape[1]):
        p, total = probs[:, k], 0.0
        for m in range(num_bins):
            mask = (p > m / num_bins) & (p <= (m + 1) / num_bins)
            if m == 0:
                mask |= p == 0
            if mask.any():
                total += mask.sum() / len(labels) * abs(np.mean(labels[mask] == k) - p[mask].mean())
        per_class.append(total)
    return np.mean(per_class)


def _reference_nll(logits, labels, temperature=1.0):
    z = logits / temperature
    z = z - z.max(-1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -np.mean(log_probs[np.arange(len(labels)), labels])


def _random_case(seed, n=500, classes=7, scale=3.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, classes)) * scale
    labels = rng.integers(0, classes, size=n)
    labels[: n // 2] = logits[: n // 2].argmax(1)  # half right, half random: a non-trivial ECE
    return logits, labels


def _sample_labels(probs, rng):
    return (probs.cumsum(1) > rng.random((len(probs), 1))).argmax(1)


# ---- metrics ------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed,num_bins", [(0, 15), (1, 10), (2, 1), (3, 37)])
def test_ece_matches_numpy_reference(seed, num_bins):
    logits, labels = _random_case(seed)
    probs = _softmax(logits)
    got = calibration.expected_calibration_error(probs, labels, num_bins)
    assert got == pytest.approx(_reference_ece(probs, labels, num_bins), abs=1e-12)
    assert 0 < got < 1


def test_ece_of_a_perfectly_calibrated_predictor_is_zero():
    # Two bins, each with a confidence that equals its accuracy exactly: 0.7 (7 of 10 right) and
    # 0.9 (9 of 10 right).
    probs = np.array([[0.7, 0.3]] * 10 + [[0.1, 0.9]] * 10)
    labels = np.array([0] * 7 + [1] * 3 + [1] * 9 + [0] * 1)
    assert calibration.expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_confident_wrong_predictions_is_the_mean_confidence():
    rng = np.random.default_rng(4)
    probs = _softmax(rng.normal(size=(200, 5)) * 6)
    wrong = (probs.argmax(1) + 1 + rng.integers(0, 4, size=200)) % 5
    got = calibration.expected_calibration_error(probs, wrong)
    assert got == pytest.approx(probs.max(1).mean(), abs=1e-12)


def test_calibration_bins_count_every_example_once():
    logits, labels = _random_case(5)
    bins = calibration.calibration_bins(_softmax(logits), labels, 15)
    assert bins["counts"].sum() == len(labels) and len(bins["edges"]) == 16
    filled = bins["counts"] > 0
    assert np.all(bins["confidence"][filled] > bins["edges"][:-1][filled])
    assert np.all(bins["confidence"][filled] <= bins["edges"][1:][filled])


@pytest.mark.parametrize("seed", [0, 1])
def test_classwise_ece_nll_and_brier_match_references(seed):
    logits, labels = _random_case(seed, classes=4)
    probs = _softmax(logits)
    assert calibration.classwise_expected_calibration_error(probs, labels, 15) == pytest.approx(
        _reference_classwise_ece(probs, labels, 15), abs=1e-12
    )
    one_hot = np.eye(4)[labels]
    assert calibration.brier_score(probs, labels) == pytest.approx(
        np.mean(np.sum((probs - one_hot) ** 2, 1)), abs=1e-12
    )
    for temperature in (0.5, 1.0, 3.0):
        assert calibration.negative_log_likelihood(logits, labels, temperature) == pytest.approx(
            _reference_nll(logits, labels, temperature), rel=1e-10
        )


def test_metrics_take_tensors_and_float32():
    logits, labels = _random_case(6)
    as_tensor = tf.constant(logits.astype("float32"))
    assert calibration.negative_log_likelihood(as_tensor, tf.constant(labels)) == pytest.approx(
        _reference_nll(logits, labels), rel=1e-5
    )
    probs32 = tf.nn.softmax(as_tensor)
    assert calibration.expected_calibration_error(probs32, labels) == pytest.approx(
        _reference_ece(_softmax(logits), labels, 15), abs=1e-5
    )


def test_nll_of_extreme_logits_stays_finite():
    logits = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]])
    assert calibration.negative_log_likelihood(logits, [0, 0]) == pytest.approx(1000.0)


# ---- temperature fitting ------------------------------------------------------------------------
@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.0, 4.0])
def test_fit_temperature_recovers_a_known_temperature(true_temperature):
    # Labels follow softmax(z); the model reports z * T_true (over-confident when T_true > 1), so
    # the NLL-optimal temperature is T_true. 50000 examples make the estimate's spread ~0.5%.
    rng = np.random.default_rng(int(true_temperature * 10))
    z = rng.normal(size=(50000, 10)) * 2.0
    labels = _sample_labels(_softmax(z), rng)
    fitted = calibration.fit_temperature(z * true_temperature, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.03)


def _grid_minimum(logits, labels, low=-4.6, high=4.6, points=4001):
    grid = np.linspace(low, high, points)
    values = np.array([_reference_nll(logits, labels, math.exp(u)) for u in grid])
    return grid, values


@pytest.mark.parametrize("seed", range(6))
def test_fit_temperature_reaches_the_true_minimum(seed):
    # Varied inputs: different scales, class counts and label noise (T* from ~0.1 to ~20).
    rng = np.random.default_rng(seed)
    classes = int(rng.integers(2, 12))
    logits = rng.normal(size=(300, classes)) * rng.choice([0.05, 0.5, 3.0, 20.0])
    labels = np.where(
        rng.random(300) < rng.uniform(0.2, 0.95), logits.argmax(1), rng.integers(0, classes, 300)
    )
    fitted = calibration.fit_temperature(logits, labels)
    grid, values = _grid_minimum(logits, labels, points=2001)
    best = np.argmin(values)
    assert 0 < best < len(grid) - 1  # an interior minimum, so the comparison is meaningful
    assert abs(math.log(fitted) - grid[best]) <= grid[1] - grid[0]
    # A true minimum: no grid point and no nearby point is lower.
    at_fit = _reference_nll(logits, labels, fitted)
    assert at_fit <= values.min() + 1e-12
    for factor in (1 - 1e-4, 1 + 1e-4):
        assert at_fit <= _reference_nll(logits, labels, fitted * factor) + 1e-14


@pytest.mark.parametrize("seed", range(20))
def test_nll_after_fitting_is_never_above_nll_at_one(seed):
    logits, labels = _random_case(seed, n=200, classes=3, scale=float(seed % 5) + 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some cases hit a bound
        fitted = calibration.fit_temperature(logits, labels)
    assert (
        calibration.negative_log_likelihood(logits, labels, fitted)
        <= calibration.negative_log_likelihood(logits, labels, 1.0) + 1e-12
    )


def test_fit_temperature_at_the_bounds_warns_and_degenerate_logits_give_one():
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [3.0, 1.0]])
    with pytest.warns(UserWarning, match="at or below T = 0.01"):
        assert calibration.fit_temperature(logits, logits.argmax(1)) == 0.01  # all right
    with pytest.warns(UserWarning, match="at or above T = 100"):
        assert calibration.fit_temperature(logits, 1 - logits.argmax(1)) == 100.0  # all wrong
    assert calibration.fit_temperature(np.ones((4, 3)), [0, 1, 2, 0]) == 1.0


def test_fit_scales_logits_not_probabilities_and_keeps_predictions():
    logits, labels = _random_case(7, scale=8.0)
    fitted = calibration.fit_temperature(logits, labels)
    assert fitted > 1.5  # half the labels are random: the raw logits are over-confident
    after = calibration.softmax(logits, fitted)
    np.testing.assert_allclose(after, _softmax(logits / fitted), rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(after.argmax(1), logits.argmax(1))
    summary = calibration.calibration_summary(logits, labels, logits, labels)
    assert summary["temperature"] == pytest.approx(fitted)
    assert summary["ece_after"] < summary["ece_before"]
    assert summary["nll_after"] < summary["nll_before"]
    assert summary["ece_before"] == pytest.approx(
        _reference_ece(_softmax(logits), labels, 15), abs=1e-12
    )


# ---- bad input ----------------------------------------------------------------------------------
def _probs_and_labels():
    return _softmax(np.random.default_rng(0).normal(size=(6, 3))), np.array([0, 1, 2, 0, 1, 2])


BAD_INPUTS = {
    "empty": (np.zeros((0, 3)), np.zeros(0, int), "empty"),
    "label_too_large": (None, np.array([0, 1, 2, 3, 1, 2]), r"labels must be in \[0, 3\)"),
    "negative_label": (None, np.array([0, 1, 2, -1, 1, 2]), r"labels must be in \[0, 3\)"),
    "fractional_label": (None, np.array([0, 1, 2, 0.5, 1, 2]), "integer"),
    "non_finite": ("nan", None, "non-finite"),
    "mismatched_lengths": (None, np.array([0, 1, 2]), "6 rows of predictions but 3 labels"),
    "one_dimensional": (np.ones(6) / 6, None, "2-D"),
    "one_class": (np.ones((6, 1)), np.zeros(6, int), "at least 2 classes"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
@pytest.mark.parametrize(
    "function",
    [
        "expected_calibration_error",
        "brier_score",
        "classwise_expected_calibration_error",
        "negative_log_likelihood",
        "fit_temperature",
    ],
)
def test_bad_input_raises_one_clear_error(case, function):
    values, labels, message = BAD_INPUTS[case]
    probs, good_labels = _probs_and_labels()
    if isinstance(values, str):
        probs = probs.copy()
        probs[2, 1] = np.nan
        values = probs
    values = probs if values is None else values
    labels = good_labels if labels is None else labels
    with pytest.raises(ValueError, match=message) as error:
        getattr(calibration, function)(values, labels)
    assert str(error.value).startswith(function)


def test_probabilities_are_checked_as_probabilities():
    probs, labels = _probs_and_labels()
    with pytest.raises(ValueError, match="sum to 1"):
        calibration.expected_calibration_error(probs * 0.5, labels)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        calibration.expected_calibration_error(np.log(probs), labels)
    with pytest.raises(ValueError, match="num_bins"):
        calibration.expected_calibration_error(probs, labels, num_bins=0)
    with pytest.raises(ValueError, match="bounds"):
        calibration.fit_temperature(np.log(probs), labels, bounds=(2.0, 10.0))
    with pytest.raises(ValueError, match="temperature"):
        TemperatureScaling(0.0)


# ---- Keras layer, model and reliability diagram -------------------------------------------------
def _mlp(classes=4, inputs=6, seed=0):
    init = keras.initializers.GlorotUniform(seed=seed)
    return keras.Sequential(
        [
            keras.Input((inputs,)),
            keras.layers.Dense(16, "relu", kernel_initializer=init),
            keras.layers.Dense(classes, kernel_initializer=init),
        ]
    )


def test_calibrated_model_divides_logits_saves_and_exports(tmp_path):
    model = _mlp()
    calibrated = calibration.calibrate_model(model, 2.5)
    layer = calibrated.get_layer("temperature_scaling")
    assert not layer.trainable_weights and len(layer.non_trainable_weights) == 1
    x = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
    raw = model.predict(x, verbose=0)
    np.testing.assert_allclose(calibrated.predict(x, verbose=0), raw / 2.5, rtol=1e-6)
    path = tmp_path / "calibrated.keras"
    calibrated.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), raw / 2.5, rtol=1e-6)
    assert float(loaded.get_layer("temperature_scaling").temperature.numpy()) == 2.5
    export.save_saved_model(loaded, str(tmp_path / "saved_model"))
    np.testing.assert_allclose(
        export.saved_model_predict(str(tmp_path / "saved_model"), x), raw / 2.5, rtol=1e-5
    )


def test_reliability_diagram_writes_a_png_of_the_binned_data(tmp_path):
    logits, labels = _random_case(8)
    probs = _softmax(logits)
    path = tmp_path / "diagram.png"
    bins = reliability.reliability_diagram(probs, labels, str(path), num_bins=10, title="x")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    assert bins["ece"] == pytest.approx(_reference_ece(probs, labels, 10), abs=1e-12)


# ---- the calibrated target and distillation -----------------------------------------------------
@pytest.mark.parametrize("mode,divisor", [("scale", 1.7 * 3.0), ("replace", 1.7)])
def test_calibrated_target_equals_manual_scaling(mode, divisor):
    z = np.random.default_rng(9).normal(size=(8, 5)).astype("float32") * 4
    target = targets.build_target(
        "calibrated", temperature=3.0, calibration_temperature=1.7, calibration_mode=mode
    )
    np.testing.assert_allclose(
        np.asarray(target(z, None)), _softmax(z / divisor), rtol=1e-5, atol=1e-7
    )
    # scale mode = the plain temperature target on a TemperatureScaling-wrapped teacher
    if mode == "scale":
        plain = targets.build_target("temperature", temperature=3.0)
        scaled = TemperatureScaling(1.7)(z)
        np.testing.assert_allclose(
            np.asarray(target(z, None)), np.asarray(plain(scaled, None)), rtol=1e-6
        )


@pytest.mark.parametrize(
    "options", [{"calibration_temperature": 0.0}, {"calibration_mode": "both"}]
)
def test_calibrated_target_rejects_bad_options(options):
    with pytest.raises(ValueError, match=next(iter(options))):
        targets.build_target("calibrated", temperature=4.0, **options)


def test_distiller_with_calibrated_target_matches_calibrated_teacher_model():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 4, 64)
    student, teacher = _mlp(seed=1), _mlp(seed=2)
    by_target = tfkd.Distiller(
        student,
        teacher,
        temperature=3.0,
        alpha=0.6,
        target="calibrated",
        target_options={"calibration_temperature": 1.7},
    )
    by_model = tfkd.Distiller(
        student, calibration.calibrate_model(teacher, 1.7), temperature=3.0, alpha=0.6
    )
    results = []
    for distiller in (by_target, by_model):
        distiller.compile(optimizer="sgd", metrics=["accuracy"])
        results.append(distiller.evaluate(x, y, batch_size=32, return_dict=True, verbose=0))
    # NumPy: (1 - a) CE + a T^2 KL(softmax(z_t / (T* T)) || softmax(z_s / T))
    zs, zt = student.predict(x, verbose=0), teacher.predict(x, verbose=0)
    p_t, q_s = _softmax(zt / (1.7 * 3.0)), _softmax(zs / 3.0)
    kl = np.sum(p_t * (np.log(p_t) - np.log(q_s)), 1)
    ce = -np.log(_softmax(zs)[np.arange(64), y])
    expected = np.mean(0.4 * ce + 0.6 * 9.0 * kl)
    for result in results:
        assert result["loss"] == pytest.approx(expected, rel=1e-4)


def _one_step(strategy, x, y, teacher_weights, student_weights):
    with strategy.scope():
        teacher, student = _mlp(seed=0), _mlp(seed=0)
        teacher.set_weights(teacher_weights)
        student.set_weights(student_weights)
        distiller = tfkd.Distiller(
            student,
            calibration.calibrate_model(teacher, 0.6),
            temperature=2.0,
            alpha=0.9,
            target="calibrated",
            target_options={"calibration_temperature": 1.5},
        )
        distiller.compile(optimizer=keras.optimizers.SGD(0.5), metrics=["accuracy"])
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(len(x))
    history = distiller.fit(dataset, epochs=1, verbose=0)
    return student.get_weights(), history.history


def test_calibrated_distillation_two_replicas_take_the_same_step_as_one(mirrored):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = rng.integers(0, 4, 32)
    teacher_weights, student_weights = _mlp(seed=7).get_weights(), _mlp(seed=8).get_weights()
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    assert len(devices) == 2
    one, h1 = _one_step(
        tf.distribute.OneDeviceStrategy(devices[0]), x, y, teacher_weights, student_weights
    )
    two, h2 = _one_step(mirrored, x, y, teacher_weights, student_weights)
    assert max(np.abs(a - b).max() for a, b in zip(one, student_weights)) > 1e-3
    for a, b in zip(one, two):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    for name in ("loss", "student_loss", "distillation_loss"):
        assert h2[name][0] == pytest.approx(h1[name][0], rel=1e-5)


# ---- --calibration_mode, applied in one place ---------------------------------------------------
@pytest.mark.parametrize("mode, expected", [("scale", (1.7, 3.0)), ("replace", (1.0, 1.7))])
def test_calibrated_temperatures_give_the_logit_divisor_and_the_distillation_temperature(
    mode, expected
):
    divisor, temperature = calibration.calibrated_temperatures(mode, 1.7, 3.0)
    assert (divisor, temperature) == pytest.approx(expected)
    # Teacher targets softmax(z / (divisor T)): the paper's Eq. 3 for replace, z / (T* T) for scale.
    z = np.random.default_rng(12).normal(size=(6, 5)) * 3
    reference = _softmax(z / (1.7 if mode == "replace" else 1.7 * 3.0))
    np.testing.assert_allclose(_softmax(z / divisor / temperature), reference, rtol=1e-12)


def test_calibrated_temperatures_refuse_an_unknown_mode_and_replace_without_a_temperature():
    with pytest.raises(ValueError, match=r"calibration_mode must be one of scale, replace"):
        calibration.calibrated_temperatures("both", 1.7, 3.0)
    with pytest.raises(ValueError, match=r"replace sets the distillation temperature to T\*"):
        calibration.calibrated_temperatures("replace", 1.7, None)
    assert calibration.calibrated_temperatures("scale", 1.7, None) == (1.7, None)


@pytest.mark.parametrize("mode", ["scale", "replace"])
def test_a_run_and_the_ladder_calibrate_the_teacher_through_one_function(mode):
    """`teacher_calibration.calibrated_teacher` (what --calibrate_teacher and every ladder cell
    use): scale divides the teacher's logits by T* and keeps T; replace keeps the teacher and
    sets T = T*."""
    from tfkd.experiment import teacher_calibration

    method = tfkd.methods.METHODS.get("kd")
    teacher = _mlp(seed=3)
    x = np.random.default_rng(13).normal(size=(5, 6)).astype("float32")
    options = {"temperature": 4.0, "alpha": 0.9}
    served, changed = teacher_calibration.calibrated_teacher(
        teacher, options, method, mode, 1.6, tf.distribute.get_strategy()
    )
    logits = teacher.predict(x, verbose=0)
    if mode == "scale":
        np.testing.assert_allclose(served.predict(x, verbose=0), logits / 1.6, rtol=1e-6)
        assert changed == options
    else:
        assert served is teacher and changed == {"temperature": 1.6, "alpha": 0.9}
    assert options == {"temperature": 4.0, "alpha": 0.9}  # the caller's dict is not changed
