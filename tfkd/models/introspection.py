"""What a method reads from a trained model beyond its outputs: named layers and classifier
weights (KD-sim's class similarities)."""

import numpy as np
from keras import ops


def find_layer(model, name):
    """The layer called `name` in `model` or in a model nested in it (e.g. the teacher wrapped
    by `--teacher_input_scale`), or None."""
    for layer in model.layers:
        if layer.name == name:
            return layer
    for layer in model.layers:
        if hasattr(layer, "layers") and layer is not model:
            found = find_layer(layer, name)
            if found is not None:
                return found
    return None


def classifier_weights(model, layer_name="classifier"):
    """The weights of `model`'s Dense layer `layer_name`, one row per class: [K, features].

    Raises:
      ValueError naming --classifier_layer when the layer is missing or not a Dense kernel.
    """
    layer = find_layer(model, layer_name)
    if layer is None:
        names = ", ".join(layer.name for layer in model.layers)
        raise ValueError(
            f"--classifier_layer: the teacher has no layer {layer_name!r} (its "
            f"layers: {names}); KD-sim needs the final Dense layer's weights, "
            "which a SavedModel teacher does not expose: load a .keras teacher"
        ) from None
    kernel = getattr(layer, "kernel", None)
    if kernel is None or len(kernel.shape) != 2:
        raise ValueError(
            f"--classifier_layer: layer {layer_name!r} of the teacher has no 2-D "
            f"kernel [features, classes]; name the final Dense layer"
        )
    return np.asarray(ops.convert_to_numpy(kernel), "float32").T
