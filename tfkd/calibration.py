"""Model calibration: ECE, NLL, Brier score and temperature scaling (reliability diagrams:
`tfkd.reliability`).

Guo et al. (2017), "On calibration of modern neural networks", as used by "Rethinking knowledge
distillation from the perspective of model calibration": a classifier is calibrated when its
top-1 probability equals its accuracy; temperature scaling divides the logits by one T > 0
fitted by minimising the NLL on held-out data, which changes confidences but never predictions.

    temperature = fit_temperature(validation_logits, validation_labels)
    ece = expected_calibration_error(softmax(test_logits, temperature), test_labels)
    calibrated = calibrate_model(model, temperature)   # a Keras model, saveable and exportable

The metric functions are NumPy (float64) on whole arrays; they accept anything `np.asarray`
accepts, including eager tensors.
"""

import math
import warnings

import keras
import numpy as np

DEFAULT_BINS = 15
DEFAULT_BOUNDS = (1e-2, 1e2)
CALIBRATION_MODES = ("scale", "replace")  # how a calibrated teacher is distilled


# ---- input checks -------------------------------------------------------------------------------
def _as_matrix(values, name, caller):
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(
            f"{caller}: {name} must be a 2-D array [examples, classes], got shape {values.shape}"
        )
    if values.shape[0] == 0:
        raise ValueError(f"{caller}: {name} is empty (0 examples)")
    if values.shape[1] < 2:
        raise ValueError(f"{caller}: {name} must have at least 2 classes, got {values.shape[1]}")
    if not np.issubdtype(values.dtype, np.number) or np.iscomplexobj(values):
        raise ValueError(f"{caller}: {name} must be real numbers, got dtype {values.dtype}")
    values = values.astype(np.float64)
    if not np.all(np.isfinite(values)):
        bad = int(np.sum(~np.isfinite(values)))
        raise ValueError(f"{caller}: {name} contains {bad} non-finite value(s) (NaN or inf)")
    return values


def _as_labels(labels, rows, classes, caller):
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(
            f"{caller}: labels must be a 1-D array of class indices, got shape {labels.shape}"
        )
    if len(labels) != rows:
        raise ValueError(
            f"{caller}: {rows} rows of predictions but {len(labels)} labels; they "
            "must have the same length"
        )
    if not np.issubdtype(labels.dtype, np.number) or not np.all(np.isfinite(labels)):
        raise ValueError(f"{caller}: labels must be finite class indices")
    if np.any(labels != np.round(labels)):
        raise ValueError(f"{caller}: labels must be integer class indices")
    labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= classes:
        raise ValueError(
            f"{caller}: labels must be in [0, {classes}) for {classes} classes, got "
            f"values in [{labels.min()}, {labels.max()}]"
        )
    return labels


def _check_logits(logits, labels, caller):
    logits = _as_matrix(logits, "logits", caller)
    return logits, _as_labels(labels, *logits.shape, caller)


def _check_probs(probs, labels, caller):
    probs = _as_matrix(probs, "probs", caller)
    if probs.min() < 0 or probs.max() > 1:
        raise ValueError(
            f"{caller}: probs must be probabilities in [0, 1], got values in "
            f"[{probs.min():.4g}, {probs.max():.4g}] (pass softmax(logits))"
        )
    sums = probs.sum(axis=1)
    if np.max(np.abs(sums - 1.0)) > 1e-3:
        raise ValueError(
            f"{caller}: each row of probs must sum to 1, got sums in "
            f"[{sums.min():.4g}, {sums.max():.4g}] (pass softmax(logits))"
        )
    return probs, _as_labels(labels, *probs.shape, caller)


def _check_bins(num_bins, caller):
    if isinstance(num_bins, bool) or int(num_bins) != num_bins or num_bins < 1:
        raise ValueError(f"{caller}: num_bins must be an integer >= 1, got {num_bins!r}")
    return int(num_bins)


# ---- probabilities and scores -------------------------------------------------------------------
def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """log softmax(logits [n, K] / T) in float64 -> [n, K]."""
    scaled = np.asarray(logits, np.float64) / temperature
    scaled = scaled - scaled.max(axis=-1, keepdims=True)
    return scaled - np.log(np.exp(scaled).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits [n, K] / T) in float64 -> [n, K]."""
    return np.exp(log_softmax(logits, temperature))


def negative_log_likelihood(
    logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0
) -> float:
    """Mean over examples of -log softmax(logits / T)[label] (Guo et al.'s NLL, the paper's Eq. 1).

    Args:
      logits: [n, K] real, finite.
      labels: [n] integers in [0, K).
      temperature: T > 0.
    Returns:
      float.
    """
    logits, labels = _check_logits(logits, labels, "negative_log_likelihood")
    log_probs = log_softmax(logits, temperature)
    return float(-np.mean(log_probs[np.arange(len(labels)), labels]))


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean over examples of sum_k (p_k - 1[k = label])^2, in [0, 2].

    Args:
      probs: [n, K] rows of probabilities.
      labels: [n] integers in [0, K).
    """
    probs, labels = _check_probs(probs, labels, "brier_score")
    one_hot = np.eye(probs.shape[1])[labels]
    return float(np.mean(np.sum(np.square(probs - one_hot), axis=1)))


def calibration_bins(probs, labels, num_bins=DEFAULT_BINS, caller="calibration_bins"):
    """Top-1 confidences in `num_bins` equal-width bins ((m-1)/M, m/M] (a confidence of 0 goes in
    the first bin).

    Returns:
      dict of [M] arrays: "edges" ([M + 1]), "counts", "accuracy" and "confidence" (the mean
      accuracy and top-1 probability of each bin, 0 for empty bins), and "ece".
    """
    probs, labels = _check_probs(probs, labels, caller)
    num_bins = _check_bins(num_bins, caller)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, num_bins - 1)
    counts = np.bincount(index, minlength=num_bins).astype(np.float64)
    filled = np.maximum(counts, 1.0)
    accuracy = np.bincount(index, weights=correct, minlength=num_bins) / filled
    mean_confidence = np.bincount(index, weights=confidence, minlength=num_bins) / filled
    ece = float(np.sum(counts / len(labels) * np.abs(accuracy - mean_confidence)))
    return {
        "edges": edges,
        "counts": counts.astype(np.int64),
        "accuracy": accuracy,
        "confidence": mean_confidence,
        "ece": ece,
    }


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, num_bins: int = DEFAULT_BINS
) -> float:
    """ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)| over equal-width bins of the top-1
    probability (Guo et al. 2017; the paper's Eq. 4).

    Args:
      probs: [n, K] rows of probabilities.
      labels: [n] integers in [0, K).
      num_bins: M.
    Returns:
      float in [0, 1].
    """
    return calibration_bins(probs, labels, num_bins, "expected_calibration_error")["ece"]


def classwise_expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, num_bins: int = DEFAULT_BINS
) -> float:
    """Classwise ECE (Kull et al. 2019): the mean over classes k of the binned gap between
    P(label = k) and p_k, over equal-width bins of p_k for every example.

    Args:
      probs: [n, K] rows of probabilities.
      labels: [n] integers in [0, K).
    Returns:
      float in [0, 1].
    """
    probs, labels = _check_probs(probs, labels, "classwise_expected_calibration_error")
    num_bins = _check_bins(num_bins, "classwise_expected_calibration_error")
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    total = 0.0
    for k in range(probs.shape[1]):
        p = probs[:, k]
        hit = (labels == k).astype(np.float64)
        index = np.clip(np.searchsorted(edges, p, side="left") - 1, 0, num_bins - 1)
        gap = np.abs(
            np.bincount(index, weights=hit, minlength=num_bins)
            - np.bincount(index, weights=p, minlength=num_bins)
        )
        # |B_m| / n * |mean hit - mean p| = |sum hit - sum p| / n
        total += float(np.sum(gap)) / len(labels)
    return total / probs.shape[1]


# ---- temperature scaling ------------------------------------------------------------------------
def _nll_derivatives(logits, labels, log_temperature):
    """NLL(u) of softmax(logits * exp(-u)) and its first two derivatives in u = log T.

    With beta = 1/T = exp(-u), NLL(beta) = mean(logsumexp(beta z) - beta z_y) is convex in beta:
    NLL'(beta) = mean(E_p[z] - z_y), NLL''(beta) = mean(Var_p[z]) >= 0. By the chain rule
    (d beta / du = -beta): g' = -beta NLL'(beta), g'' = beta^2 NLL''(beta) + beta NLL'(beta).
    """
    beta = math.exp(-log_temperature)
    log_probs = log_softmax(logits * beta)
    probs = np.exp(log_probs)
    rows = np.arange(len(labels))
    expected = np.sum(probs * logits, axis=1)
    variance = np.sum(probs * np.square(logits), axis=1) - np.square(expected)
    first_beta = float(np.mean(expected - logits[rows, labels]))
    second_beta = float(np.mean(np.maximum(variance, 0.0)))
    value = float(-np.mean(log_probs[rows, labels]))
    return value, -beta * first_beta, beta * beta * second_beta + beta * first_beta


def fit_temperature(
    logits: np.ndarray,
    labels: np.ndarray,
    bounds: tuple[float, float] = DEFAULT_BOUNDS,
    tolerance: float = 1e-10,
    max_steps: int = 200,
) -> float:
    """The T > 0 minimising the NLL of softmax(logits / T) (temperature scaling, Eq. 1).

    The NLL is convex in 1/T, so its derivative in u = log T changes sign once: the search keeps
    a bracket [lo, hi] of u with g'(lo) < 0 < g'(hi) and takes Newton steps on g', falling back
    to bisection whenever a step would leave the bracket or the curvature is not positive (the
    safeguarded Newton method, `rtsafe`). It therefore reaches the minimiser on any input,
    to `tolerance` in log T, with Newton's quadratic convergence near it.

    Args:
      logits: [n, K] held-out logits (never probabilities: scaling logits is the method).
      labels: [n] integers in [0, K).
      bounds: (T_min, T_max). When the minimum lies beyond a bound (for example, every held-out
        example is classified correctly, so the NLL keeps falling as T -> 0), that bound is
        returned with a warning.
    Returns:
      T as a float.
    """
    logits, labels = _check_logits(logits, labels, "fit_temperature")
    low_t, high_t = bounds
    if not 0 < low_t < 1 < high_t or not math.isfinite(high_t):
        raise ValueError(
            f"fit_temperature: bounds must satisfy 0 < T_min < 1 < T_max, got {bounds}"
        )
    if np.all(np.ptp(logits, axis=1) == 0):
        return 1.0  # constant logits: every T gives the same NLL (log K)
    lo, hi = math.log(low_t), math.log(high_t)
    if _nll_derivatives(logits, labels, lo)[1] >= 0:
        warnings.warn(f"fit_temperature: the NLL minimum is at or below T = {low_t}; returning it")
        return float(low_t)
    if _nll_derivatives(logits, labels, hi)[1] <= 0:
        warnings.warn(
            f"fit_temperature: the NLL minimum is at or above T = {high_t}; returning "
            "it (the logits carry almost no information about the labels)"
        )
        return float(high_t)
    u = 0.0
    for _ in range(max_steps):
        _, slope, curvature = _nll_derivatives(logits, labels, u)
        if slope == 0:
            break
        if slope < 0:
            lo = u
        else:
            hi = u
        step = -slope / curvature if curvature > 0 else math.inf
        candidate = u + step
        if not lo < candidate < hi:
            candidate = 0.5 * (lo + hi)
        if abs(candidate - u) < tolerance or hi - lo < tolerance:
            u = candidate
            break
        u = candidate
    return float(math.exp(u))


def calibration_summary(
    fit_logits: np.ndarray,
    fit_labels: np.ndarray,
    eval_logits: np.ndarray,
    eval_labels: np.ndarray,
    num_bins: int = DEFAULT_BINS,
    temperature: float | None = None,
) -> dict:
    """Fits T* on (`fit_logits`, `fit_labels`) (unless `temperature` is given) and measures the
    calibration of (`eval_logits`, `eval_labels`) before (T = 1) and after (T = T*).

    Returns:
      dict: temperature, accuracy, ece_before/after, nll_before/after, brier_before/after,
      classwise_ece_before/after (all floats) and num_bins.
    """
    if temperature is None:
        temperature = fit_temperature(fit_logits, fit_labels)
    eval_logits, eval_labels = _check_logits(eval_logits, eval_labels, "calibration_summary")
    summary = {
        "temperature": float(temperature),
        "accuracy": float(np.mean(eval_logits.argmax(axis=1) == eval_labels)),
    }
    for when, t in (("before", 1.0), ("after", temperature)):
        probs = softmax(eval_logits, t)
        summary[f"ece_{when}"] = expected_calibration_error(probs, eval_labels, num_bins)
        summary[f"nll_{when}"] = negative_log_likelihood(eval_logits, eval_labels, t)
        summary[f"brier_{when}"] = brier_score(probs, eval_labels)
        summary[f"classwise_ece_{when}"] = classwise_expected_calibration_error(
            probs, eval_labels, num_bins
        )
    summary["num_bins"] = int(num_bins)
    return summary


@keras.saving.register_keras_serializable(package="tfkd")
class TemperatureScaling(keras.layers.Layer):
    """logits [batch, K] -> logits / T, with T a non-trainable weight (saved with the model)."""

    def __init__(self, temperature=1.0, **kwargs):
        super().__init__(**kwargs)
        temperature = float(temperature)
        if not temperature > 0 or not math.isfinite(temperature):
            raise ValueError(
                f"TemperatureScaling: temperature must be a finite number > 0, got {temperature}"
            )
        self.temperature = self.add_weight(
            name="temperature",
            shape=(),
            initializer=keras.initializers.Constant(temperature),
            trainable=False,
        )

    def call(self, logits):
        return logits / keras.ops.cast(self.temperature, logits.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "temperature": float(self.temperature.numpy())}


def calibrate_model(model: keras.Model, temperature: float, name: str | None = None) -> keras.Model:
    """`model` (inputs -> logits) followed by TemperatureScaling(T): a Keras model giving the
    calibrated logits, with the same predictions. Build it inside the strategy scope."""
    if isinstance(getattr(model, "input", None), dict):  # text models: token ids and masks
        inputs = {
            key: keras.Input(shape=tuple(tensor.shape[1:]), dtype=tensor.dtype, name=key)
            for key, tensor in model.input.items()
        }
    else:
        inputs = keras.Input(shape=tuple(model.input_shape[1:]), name="inputs")
    outputs = TemperatureScaling(temperature, name="temperature_scaling")(model(inputs))
    return keras.Model(inputs, outputs, name=name or f"{model.name}_calibrated")


def calibrated_temperatures(mode, calibration_temperature, temperature):
    """How a teacher calibrated at T* is distilled at the method's temperature T, as
    `--calibration_mode` says; the one place the modes are applied.

    Args:
      mode: "scale": the calibrated teacher's logits z / T* softened by T, so the teacher's
        targets are softmax(z / (T* T)) and the student's softmax(s / T); "replace": the
        paper's Eq. 3, T* replaces the distillation temperature: softmax(z / T*), softmax(s / T*).
      calibration_temperature: T* (`fit_temperature`); temperature: the method's T, or None
        for a method without one (which "replace" refuses).
    Returns:
      (divisor of the teacher's logits, distillation temperature): (T*, T) or (1, T*).
    """
    if mode not in CALIBRATION_MODES:
        raise ValueError(
            f"calibration_mode must be one of {', '.join(CALIBRATION_MODES)}, got {mode!r}"
        )
    if mode == "scale":
        return float(calibration_temperature), temperature
    if temperature is None:
        raise ValueError(
            "calibration_mode replace sets the distillation temperature to T*, and this "
            "method has no temperature; use calibration_mode scale"
        )
    return 1.0, float(calibration_temperature)
