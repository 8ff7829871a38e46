"""A faster frozen teacher: batch norm folded into the layer before it, optionally in bfloat16.

A teacher runs in inference mode only, where a BatchNormalization layer is the per-channel affine
map `y = gamma * (z - mean) / sqrt(variance + epsilon) + beta`. When `z = W x + b` comes from a
Conv2D, DepthwiseConv2D or Dense layer whose output feeds nothing else, the two fold into one
layer with `W' = W * s` and `b' = (b - mean) * s + beta`, `s = gamma / sqrt(variance + epsilon)`
(per output channel), which saves the batch norm's passes over every activation tensor.

    teacher = tfkd.teacher.serving.fast_teacher(teacher, "bfloat16", check_inputs=x_val[:256])

Precision. Folding changes only the float32 rounding: on the zoo models the folded logits equal
the original ones within `FOLD_TOLERANCE` (relative to the largest |logit|). bfloat16 keeps 8
significant bits, so its soft targets differ measurably; `check_soft_targets` compares the
softmax at the distillation temperature and raises when the largest absolute difference of any
probability exceeds the tolerance (default `BFLOAT16_TOLERANCE`, chosen from the measurement in
docs/benchmarks/teacher_precision.json).
"""

import keras
import numpy as np
from keras import ops

PRECISIONS = ("float32", "bfloat16")
FOLDABLE = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
FOLD_TOLERANCE = 1e-5
# Largest |softmax(z_ref / T) - softmax(z_fast / T)| accepted by default, per precision. On a
# resnet20 trained on Fashion-MNIST (84 % test accuracy), over 5000 test images, the folded
# bfloat16 teacher's largest difference was 0.034 at T = 1 and 0.014 at T = 4, the folded
# float32 one's 1.2e-6 (docs/benchmarks/teacher_precision.json); 0.05 accepts that rounding at
# either temperature and still stops a teacher whose bfloat16 copy is broken.
BFLOAT16_TOLERANCE = 0.05
TOLERANCES = {"float32": 1e-5, "bfloat16": BFLOAT16_TOLERANCE}
# Layers that stay float32 in a bfloat16 teacher: the input normalisation (8 bits would shift
# every pixel by up to 0.4 %) and the classifier (its logits are what distillation reads).
FLOAT32_LAYERS = (keras.layers.Normalization, keras.layers.InputLayer)


def _is_functional(model):
    return (
        isinstance(model, keras.Model)
        and hasattr(model, "_nodes")
        and hasattr(model, "_operations")
    )


def is_functional(model):
    """True for a functional `keras.Model` (what `fold_batch_norm` and `cast_teacher` take)."""
    return _is_functional(model)


def count_batch_norms(model):
    """BatchNormalization layers in `model`, nested models included."""
    return sum(
        count_batch_norms(layer)
        if isinstance(layer, keras.Model)
        else int(isinstance(layer, keras.layers.BatchNormalization))
        for layer in model.layers
    )


def _producer(tensor):
    return tensor._keras_history.operation


def _graph_nodes(model):
    """The call events (nodes) that make up `model`'s own graph."""
    return [node for nodes in model._nodes_by_depth.values() for node in nodes]


def _consumers(model):
    """{id(operation): number of nodes of `model` that read one of its outputs}."""
    counts = {}
    for node in _graph_nodes(model):
        for tensor in node.input_tensors:
            key = id(_producer(tensor))
            counts[key] = counts.get(key, 0) + 1
    return counts


def _own_nodes(model, layer):
    own = {id(node) for node in _graph_nodes(model)}
    return [node for node in layer._inbound_nodes if id(node) in own]


def foldable_pairs(model):
    """{id(batch norm): foldable layer before it} for every batch norm of `model` that can fold.

    A batch norm folds when it normalises the last axis, is called once in the model, and reads
    the output of a Conv2D / DepthwiseConv2D / Dense layer (channels last, no activation, called
    once) that nothing else in the model reads and that is not a model output.
    """
    consumers = _consumers(model)
    outputs = {id(_producer(tensor)) for tensor in model.outputs}
    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        nodes = _own_nodes(model, layer)
        if len(nodes) != 1 or len(nodes[0].input_tensors) != 1:
            continue
        tensor = nodes[0].input_tensors[0]
        axis = layer.axis if isinstance(layer.axis, int) else None
        if axis not in (-1, len(tensor.shape) - 1):
            continue
        previous = _producer(tensor)
        if not isinstance(previous, FOLDABLE) or len(_own_nodes(model, previous)) != 1:
            continue
        if getattr(previous, "data_format", "channels_last") != "channels_last":
            continue
        if (
            keras.activations.serialize(previous.activation) not in ("linear", None)
            and previous.activation is not keras.activations.linear
        ):
            continue
        if consumers.get(id(previous), 0) != 1 or id(previous) in outputs:
            continue
        pairs[id(layer)] = previous
    return pairs


def _folded_weights(layer, batch_norm):
    """(kernel, bias) of `layer` with `batch_norm` (inference mode) folded in, float32."""
    kernel = ops.convert_to_numpy(layer.kernel).astype(np.float64)
    channels = (
        kernel.shape[-2] * kernel.shape[-1]
        if isinstance(layer, keras.layers.DepthwiseConv2D)
        else kernel.shape[-1]
    )
    bias = (
        ops.convert_to_numpy(layer.bias).astype(np.float64)
        if layer.use_bias
        else np.zeros(channels)
    )
    mean = ops.convert_to_numpy(batch_norm.moving_mean).astype(np.float64)
    variance = ops.convert_to_numpy(batch_norm.moving_variance).astype(np.float64)
    gamma = (
        ops.convert_to_numpy(batch_norm.gamma).astype(np.float64)
        if batch_norm.scale
        else np.ones(channels)
    )
    beta = (
        ops.convert_to_numpy(batch_norm.beta).astype(np.float64)
        if batch_norm.center
        else np.zeros(channels)
    )
    scale = gamma / np.sqrt(variance + batch_norm.epsilon)
    # A depthwise kernel is [h, w, in, multiplier]; output channel c * multiplier + m.
    kernel = kernel * scale.reshape(
        kernel.shape[-2:] if isinstance(layer, keras.layers.DepthwiseConv2D) else (-1,)
    )
    return kernel.astype(np.float32), ((bias - mean) * scale + beta).astype(np.float32)


def fold_batch_norm(model):
    """A copy of a functional classifier with its foldable batch norms folded (inference mode).

    Args:
      model: a functional `keras.Model` (nested functional models are folded too).
    Returns:
      A new functional `keras.Model` with the same inputs and outputs (float32 [batch, ...] ->
      [batch, num_classes]) and its own weights: each foldable BatchNormalization (see
      `foldable_pairs`) is gone and the layer before it gained a bias; every other batch norm
      stays. The original model is unchanged. Meant for inference: training the copy would not
      train batch norms that are no longer there.
    Raises:
      ValueError if `model` is not a functional Keras model.
    """
    if not _is_functional(model):
        raise ValueError(f"model must be a functional keras.Model, got {type(model).__name__}")
    pairs = foldable_pairs(model)
    batch_norm_of = {
        id(layer): batch_norm
        for batch_norm in model.layers
        for layer in [pairs.get(id(batch_norm))]
        if layer is not None
    }
    clones, original_of = [], {}

    def clone(layer):
        if _is_functional(layer):
            new = fold_batch_norm(layer)
        else:
            config = layer.get_config()
            if id(layer) in batch_norm_of:
                config["use_bias"] = True
            new = layer.__class__.from_config(config)
        clones.append((layer, new))
        original_of[id(new)] = layer
        return new

    def call(layer, *args, **kwargs):
        if id(original_of[id(layer)]) in pairs:  # a folded batch norm: pass its input on
            return args[0]
        return layer(*args, **kwargs)

    folded = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for old, new in clones:
        if id(old) in pairs or _is_functional(old):
            continue
        if id(old) in batch_norm_of:
            kernel, bias = _folded_weights(old, batch_norm_of[id(old)])
            new.kernel.assign(kernel)
            new.bias.assign(bias)
        else:
            new.set_weights(old.get_weights())
    return folded


def _output_layers(model):
    return {id(_producer(tensor)) for tensor in model.outputs}


def cast_teacher(model, precision):
    """The teacher at `precision`: "float32" returns `model` itself; "bfloat16" returns a copy
    whose layers compute and keep their weights in bfloat16, except the input normalisation and
    the layers giving the model's outputs, which stay float32 (so the logits are float32).

    Args:
      model: a functional `keras.Model`, float32 [batch, ...] -> [batch, num_classes].
      precision: one of PRECISIONS.
    Returns:
      A `keras.Model` with the same input and output shapes; outputs are float32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "float32":
        return model
    if not _is_functional(model):
        raise ValueError(f"model must be a functional keras.Model, got {type(model).__name__}")
    keep = _output_layers(model)
    clones = []

    def clone(layer):
        if _is_functional(layer):
            new = cast_teacher(layer, precision)
        else:
            config = layer.get_config()
            if not isinstance(layer, FLOAT32_LAYERS) and id(layer) not in keep:
                config["dtype"] = precision
            new = layer.__class__.from_config(config)
            clones.append((layer, new))
        return new

    cast = keras.models.clone_model(model, clone_function=clone)
    for old, new in clones:
        new.set_weights(old.get_weights())
    return cast


def _softmax(logits, temperature):
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def soft_target_difference(reference_logits, fast_logits, temperature):
    """max over examples and classes of |softmax(reference / T) - softmax(fast / T)|.

    Args:
      reference_logits, fast_logits: float [batch, K]; temperature: T > 0.
    Returns:
      float, the largest absolute difference of any one probability (in [0, 1]).
    """
    reference_logits, fast_logits = np.asarray(reference_logits), np.asarray(fast_logits)
    if reference_logits.shape != fast_logits.shape or reference_logits.ndim != 2:
        raise ValueError(
            f"reference_logits and fast_logits must both be [batch, K] of one "
            f"shape, got {reference_logits.shape} and {fast_logits.shape}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    difference = np.abs(
        _softmax(reference_logits, temperature) - _softmax(fast_logits, temperature)
    )
    return float(difference.max()) if difference.size else 0.0


def check_soft_targets(reference_logits, fast_logits, temperature, tolerance):
    """Raises ValueError when the fast teacher's soft targets are off by more than `tolerance`.

    The measure is `soft_target_difference`: the largest absolute difference, over every
    example and class, between softmax(reference / T) and softmax(fast / T).

    Returns:
      The measured difference (float) when it is within `tolerance`.
    """
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    difference = soft_target_difference(reference_logits, fast_logits, temperature)
    if not difference <= tolerance:
        raise ValueError(
            f"the fast teacher's soft targets differ from the reference teacher's: max |softmax("
            f"reference / T) - softmax(fast / T)| = {difference:.3g} at T = {temperature} "
            f"exceeds the tolerance {tolerance:.3g}; use precision='float32' or a larger "
            "tolerance"
        )
    return difference


def fast_teacher(
    model, precision="float32", check_inputs=None, temperature=4.0, tolerance=None, batch_size=256
):
    """`cast_teacher(fold_batch_norm(model), precision)`, checked against `model`.

    Args:
      model: a functional `keras.Model` classifier (frozen teacher), giving logits.
      precision: "float32" or "bfloat16".
      check_inputs: optional float32 [N, ...] inputs (in the model's input convention) on which
        the fast teacher's soft targets must match the original's; None skips the check.
      temperature: the distillation temperature the check compares soft targets at.
      tolerance: largest accepted `soft_target_difference`; None means TOLERANCES[precision].
      batch_size: batch size of the check's forward passes.
    Returns:
      The fast teacher, a new `keras.Model` (the original is unchanged), non-trainable.
    Raises:
      ValueError (from `check_soft_targets`) when the check fails.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    fast = cast_teacher(fold_batch_norm(model), precision)
    fast.trainable = False
    if check_inputs is not None:
        reference = model.predict(check_inputs, batch_size=batch_size, verbose=0)
        candidate = fast.predict(check_inputs, batch_size=batch_size, verbose=0)
        check_soft_targets(
            reference,
            candidate,
            temperature,
            TOLERANCES[precision] if tolerance is None else tolerance,
        )
    return fast
