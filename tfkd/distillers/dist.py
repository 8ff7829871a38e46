"""`--method=dist`: DIST, knowledge distillation from a stronger teacher (Huang et al., 2022).

    L = ce_weight * CE(y, z_s) + T^2 (inter_weight (1 - mean_i Pearson(p_s[i, :], p_t[i, :]))
                                      + intra_weight (1 - mean_k Pearson(p_s[:, k], p_t[:, k])))
with p = softmax(z / T) (`losses.dist_loss`). The intra-class correlations are statistics of
the whole batch, so the DIST term is a batch-level loss: under tf.distribute the distiller
gathers the logits of the global batch across replicas (`gather_global_batch`), computes the
term on them and adds it through `losses.replica_scaled`, so 2 replicas take the step 1 replica
takes.

On sequence outputs [batch, time, K] DIST reduces over tokens: every valid token of the global
batch is one row of both correlations (padding, tokens of sample weight 0 and labels of -100
left out), not one row per sequence.
"""

import dataclasses

import keras

from tfkd import losses
from tfkd.distillers.base import BATCH_LOSS, Distiller
from tfkd.global_batch import gather_global_batch
from tfkd.methods import METHODS, TEMPERATURE, Method, Option

# The official code's CIFAR-100 and ImageNet settings use tau = 1 (its default).
DIST_TEMPERATURE = dataclasses.replace(TEMPERATURE, default=1.0)
INTER_WEIGHT = Option(
    "inter_weight",
    1.0,
    "dist: weight beta of the inter-class relation term (per-example correlations).",
    search=[0.5, 1.0, 2.0],
    minimum=0,
)
INTRA_WEIGHT = Option(
    "intra_weight",
    1.0,
    "dist: weight gamma of the intra-class relation "
    "term (per-class correlations across the batch).",
    search=[0.5, 1.0, 2.0],
    minimum=0,
)
CE_WEIGHT = Option("ce_weight", 1.0, "dist: weight of the student's cross-entropy.", minimum=0)


@keras.saving.register_keras_serializable(package="tfkd")
class DISTDistiller(Distiller):
    """ce_weight * CE + DIST; reports `distillation_loss` (the DIST term, a batch scalar)."""

    def __init__(
        self,
        student,
        teacher,
        temperature=1.0,
        inter_weight=1.0,
        intra_weight=1.0,
        ce_weight=1.0,
        **kwargs,
    ):
        super().__init__(student, teacher, temperature=temperature, alpha=1.0, **kwargs)
        for name, value in (
            ("inter_weight", inter_weight),
            ("intra_weight", intra_weight),
            ("ce_weight", ce_weight),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.inter_weight, self.intra_weight = float(inter_weight), float(intra_weight)
        self.ce_weight = float(ce_weight)

    reads_mask = True

    def compute_terms(self, x, y, student_logits, teacher_logits, training, mask=None):
        student_loss = losses.cross_entropy(y, student_logits)
        relation_loss = losses.dist_loss(
            gather_global_batch(student_logits),
            gather_global_batch(teacher_logits),
            self.temperature,
            self.inter_weight,
            self.intra_weight,
            weights=gather_global_batch(mask),
        )
        return {
            "loss": self.ce_weight * student_loss,
            BATCH_LOSS: relation_loss,
            "student_loss": student_loss,
            "distillation_loss": relation_loss,
        }


def _build(student, teacher, data, options):
    return DISTDistiller(
        student,
        teacher,
        temperature=options["temperature"],
        inter_weight=options["inter_weight"],
        intra_weight=options["intra_weight"],
        ce_weight=options["ce_weight"],
    )


METHODS.register(
    "dist",
    Method(
        _build,
        (DIST_TEMPERATURE, INTER_WEIGHT, INTRA_WEIGHT, CE_WEIGHT),
        description="Huang et al. 2022: CE + inter- and intra-class Pearson relations",
    ),
)
