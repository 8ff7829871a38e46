"""`--method=fitnet`: FitNets hints from one teacher (Romero et al., ICLR 2015).

Per example:
    L = (1 - alpha) CE(y, z_s) + alpha T^2 KL(softmax(z_t / T) || softmax(z_s / T))
        + hint_weight * MSE(F_t, r(h_s)),
h_s the output of the student's layer `--student_layer`, F_t that of the teacher's
`--teacher_layer` (default: the zoo's `features`, the last feature map) and r the regressor: a
1x1 convolution + batch norm + ReLU for feature maps (resizing the student's map to the
teacher's spatial size first), dense + ReLU for vectors, as mdistiller's `ConvReg`. The
regressor trains with the student and is never exported. mdistiller trains FitNet with CE +
100 MSE; `--alpha=0` gives exactly that.
"""

import keras
from keras import ops

from tfkd import models
from tfkd import teacher_weighting as multi_teacher
from tfkd.distillers.base import Distiller
from tfkd.distillers.features import HINT_WEIGHT, build_adapter, feature_view
from tfkd.methods import ALPHA, METHODS, TEMPERATURE, Method, Option

STUDENT_LAYER = Option(
    "student_layer", models.FEATURES, "fitnet: the student's hinted layer (its output h_s)."
)
TEACHER_LAYER = Option(
    "teacher_layer", models.FEATURES, "fitnet: the teacher's hint layer (its output F_t)."
)


@keras.saving.register_keras_serializable(package="tfkd")
class FitNetDistiller(Distiller):
    """KD plus a FitNets hint term; any functional (or Sequential) student and teacher.

    Reports `loss`, `student_loss`, `distillation_loss` and `hint_loss` (the MSE before
    `hint_weight`). `adapters` holds the regressor r.
    """

    loss_terms = ("loss", "student_loss", "distillation_loss", "hint_loss")

    def __init__(
        self,
        student,
        teacher,
        temperature=4.0,
        alpha=0.9,
        hint_weight=100.0,
        student_layer=models.FEATURES,
        teacher_layer=models.FEATURES,
        **kwargs,
    ):
        super().__init__(student, teacher, temperature=temperature, alpha=alpha, **kwargs)
        if teacher is None:
            raise ValueError("fitnet needs a teacher; pass teacher=")
        if hint_weight < 0:
            raise ValueError(f"hint_weight must be >= 0, got {hint_weight}")
        self.hint_weight = float(hint_weight)
        self.student_view = feature_view(
            student, student_layer, "the student", f"{student.name}_hint", flag="student_layer"
        )
        self.teacher_view = feature_view(
            teacher, teacher_layer, "the teacher", f"{teacher.name}_hint", flag="teacher_layer"
        )
        self.teacher_view.trainable = False
        self.adapter = build_adapter(
            self.student_view.output[0].shape[1:],
            self.teacher_view.output[0].shape[1:],
            "hint_regressor",
        )

    @property
    def adapters(self):
        """The trainable models beside the student (never exported)."""
        return [self.adapter]

    def teacher_outputs(self, x):
        features, logits = self.teacher_view(x, training=False)
        return ops.stop_gradient(logits), ops.stop_gradient(features)

    def teacher_logits(self, x):
        # Overridden so that stored logits (fixed teaching, a cache, replay) refuse this method.
        return self.teacher_outputs(x)[0]

    def student_outputs(self, x, training):
        features, logits = self.student_view(x, training=training)
        return logits, features

    def compute_terms(self, x, y, student_logits, teacher_logits, training, features=None):
        student_features, teacher_features = features
        terms = super().compute_terms(x, y, student_logits, teacher_logits, training)
        hint_loss = multi_teacher.feature_mse(
            teacher_features, self.adapter(student_features, training=training)
        )
        terms["hint_loss"] = hint_loss
        terms["loss"] = terms["loss"] + self.hint_weight * hint_loss
        return terms


def _build(student, teacher, data, options):
    return FitNetDistiller(
        student,
        teacher,
        temperature=options["temperature"],
        alpha=options["alpha"],
        hint_weight=options["hint_weight"],
        student_layer=options["student_layer"],
        teacher_layer=options["teacher_layer"],
    )


METHODS.register(
    "fitnet",
    Method(
        _build,
        (TEMPERATURE, ALPHA, HINT_WEIGHT, STUDENT_LAYER, TEACHER_LAYER),
        needs_features=True,
        description="Romero et al. 2015: KD + hint_weight MSE(F_t, r(h_s))",
    ),
)
