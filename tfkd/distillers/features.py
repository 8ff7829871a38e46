"""Feature paths shared by the feature-based distillers (FitNets, FitNet-MKD, CA-MKD).

A feature method reads an intermediate layer of the student and of each teacher (a "view":
a functional model giving (features, logits)) and maps the student's features to a teacher's
shape with a trainable adapter that trains with the student and is never exported.
"""

import keras

from tfkd import methods
from tfkd import teacher_weighting as multi_teacher

HINT_WEIGHT = methods.Option(
    "hint_weight",
    100.0,
    "fitnet, fitnet_mkd: weight of the hint loss MSE(F_t, r(h_s)) (paper and mdistiller: 100).",
    search={"min": 1.0, "max": 1000.0, "scale": "log"},
    minimum=0,
)


def feature_view(model, layer_name, role, name, flag="feature_layer"):
    """A functional model x -> (output of layer `layer_name` [B, ...], logits [B, C])."""
    check_graph(model, role, flag)
    return keras.Model(
        model.input, [layer_output(model, layer_name, role, flag), model.output], name=name
    )


class ResizeFeatures(keras.layers.Layer):
    """[B, H, W, C] -> [B, h, w, C] with `tfkd.teacher_weighting.resize_features`."""

    def __init__(self, size, **kwargs):
        super().__init__(**kwargs)
        self.size = tuple(size)

    def call(self, features):
        return multi_teacher.resize_features(features, self.size)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.size, input_shape[-1])


def build_adapter(student_shape, teacher_shape, name):
    """r_k: student features [B, *student_shape] -> [B, *teacher_shape].

    Feature maps: resize to the teacher's spatial size, then 1x1 convolution + batch norm + ReLU
    (the authors' `Embed`); the batch norm is synchronised across replicas so that 2 replicas
    take the same step as 1. Vectors: dense + ReLU (their `Regress`).
    """
    student_shape, teacher_shape = tuple(student_shape), tuple(teacher_shape)
    if len(student_shape) != len(teacher_shape) or len(student_shape) not in (1, 3):
        raise ValueError(
            f"the student's feature shape {student_shape} and {name}'s "
            f"{teacher_shape} must both be feature maps (height, width, channels) "
            "or both vectors (features,)"
        )
    inputs = keras.Input(student_shape)
    if len(student_shape) == 3:
        x = ResizeFeatures(teacher_shape[:2], name="resize")(inputs)
        x = keras.layers.Conv2D(teacher_shape[-1], 1, use_bias=False, name="conv")(x)
        x = keras.layers.BatchNormalization(
            momentum=0.9, epsilon=1e-5, synchronized=True, name="bn"
        )(x)
    else:
        x = keras.layers.Dense(teacher_shape[-1], name="dense")(inputs)
    outputs = keras.layers.ReLU(name="relu")(x)
    return keras.Model(inputs, outputs, name=name)


def check_graph(model, role, flag="feature_layer"):
    try:
        model.input  # noqa: B018 - raises when the model has no layer graph
    except (AttributeError, ValueError):
        raise ValueError(
            f"{flag}: {role} ({model.name}) has no layer graph to read a "
            "feature map from (a subclassed model, or a Sequential model without an "
            "Input never called); feature methods (lambda2 > 0) need functional or "
            "Sequential models"
        ) from None


def layer_output(model, layer_name, role, flag="feature_layer"):
    try:
        return model.get_layer(layer_name).output
    except ValueError:
        raise ValueError(
            f"{flag}: {role} ({model.name}) has no layer named "
            f"{layer_name!r}; feature methods need it in the student and every "
            "teacher (tfkd models name their last feature map 'features')"
        ) from None
