"""`--method=dkd`: decoupled knowledge distillation (Zhao et al., CVPR 2022).

Per example, in epoch e (counted from 1):
    L = CE(y, z_s) + min(e / warmup_epochs, 1) * DKD(y, z_s, z_t),
    DKD = T^2 (tckd_weight KL(b_t || b_s) + nckd_weight KL(q_t || q_s))      (`losses.decoupled_kd`)
with the linear warm-up of the authors' code (mdistiller, `DKD.forward_train`: CIFAR-100
uses T = 4, alpha = 1, beta = 8, warmup 20). Per token on sequence outputs, labels per token.
`--logit_standardization` z-scores both models' logits before DKD (Sun et al. 2024, whose code
does it in `dkd_loss`); the cross-entropy reads the raw logits.
"""

import keras
from keras import ops

from tfkd import losses
from tfkd.distillers.base import LOGIT_STANDARDIZATION, Distiller
from tfkd.methods import METHODS, TEMPERATURE, Method, Option

TCKD_WEIGHT = Option(
    "tckd_weight",
    1.0,
    "dkd: weight alpha of the target-class term TCKD.",
    search={"min": 0.5, "max": 2.0},
    minimum=0,
)
NCKD_WEIGHT = Option(
    "nckd_weight",
    8.0,
    "dkd: weight beta of the non-target-class term NCKD.",
    search=[1.0, 2.0, 4.0, 8.0],
    minimum=0,
)
WARMUP_EPOCHS = Option(
    "dkd_warmup_epochs",
    20,
    "dkd: epochs over which the DKD weight rises "
    "linearly to 1 (epoch e, from 1, weighs min(e / N, 1)).",
    minimum=1,
)


def warmup_factor(epoch, warmup_epochs):
    """min(epoch / warmup_epochs, 1) for an epoch counted from 1 (a scalar tensor or number)."""
    return ops.minimum(ops.cast(epoch, "float32") / float(warmup_epochs), 1.0)


@keras.saving.register_keras_serializable(package="tfkd")
class DecoupledDistiller(Distiller):
    """CE + warm-up x DKD; reports `distillation_loss` (DKD before the warm-up factor) and
    `warmup` (the factor of the current epoch)."""

    loss_terms = ("loss", "student_loss", "distillation_loss", "warmup")
    counts_epochs = True

    def __init__(
        self,
        student,
        teacher,
        temperature=4.0,
        tckd_weight=1.0,
        nckd_weight=8.0,
        warmup_epochs=20,
        **kwargs,
    ):
        super().__init__(student, teacher, temperature=temperature, alpha=1.0, **kwargs)
        for name, value in (("tckd_weight", tckd_weight), ("nckd_weight", nckd_weight)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if int(warmup_epochs) != warmup_epochs or warmup_epochs < 1:
            raise ValueError(f"dkd_warmup_epochs must be an integer >= 1, got {warmup_epochs}")
        self.tckd_weight, self.nckd_weight = float(tckd_weight), float(nckd_weight)
        self.warmup_epochs = int(warmup_epochs)

    def compute_terms(self, x, y, student_logits, teacher_logits, training):
        student_loss = losses.cross_entropy(y, student_logits)
        teacher_logits, distilled_logits = self.distillation_logits(teacher_logits, student_logits)
        distillation_loss = losses.decoupled_kd(
            y,
            distilled_logits,
            teacher_logits,
            self.temperature,
            self.tckd_weight,
            self.nckd_weight,
        )
        # `evaluate` outside `fit` sees the epoch of the last `fit` (0 before any): its loss
        # is that of the epoch just trained.
        warmup = warmup_factor(self.epoch.value + 1, self.warmup_epochs)
        return {
            "loss": student_loss + warmup * distillation_loss,
            "student_loss": student_loss,
            "distillation_loss": distillation_loss,
            "warmup": warmup,
        }


def _build(student, teacher, data, options):
    return DecoupledDistiller(
        student,
        teacher,
        temperature=options["temperature"],
        tckd_weight=options["tckd_weight"],
        nckd_weight=options["nckd_weight"],
        warmup_epochs=options["dkd_warmup_epochs"],
        logit_standardization=options["logit_standardization"],
    )


METHODS.register(
    "dkd",
    Method(
        _build,
        (TEMPERATURE, TCKD_WEIGHT, NCKD_WEIGHT, WARMUP_EPOCHS, LOGIT_STANDARDIZATION),
        description="Zhao et al. 2022: CE + min(e / warmup, 1) (a TCKD + b NCKD)",
    ),
)
