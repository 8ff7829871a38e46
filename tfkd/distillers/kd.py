"""`--method=kd`: Hinton et al.'s knowledge distillation, the `Distiller` itself.

`--divergence` picks the distillation term per example or token: `forward_kl` (Hinton's
T^2 KL(p_T || p_S), the default), `reverse_kl` (T^2 KL(p_S || p_T)) or `jsd` (GKD's generalized
JSD, `--jsd_beta`), from `tfkd.losses.DIVERGENCES`; `--logit_standardization` z-scores both
models' logits first (Sun et al. 2024).
"""

from tfkd import losses
from tfkd.distillers.base import LOGIT_STANDARDIZATION, Distiller
from tfkd.methods import ALPHA, METHODS, TEMPERATURE, Method, Option

DIVERGENCE = Option(
    "divergence",
    "forward_kl",
    "kd: the distillation term: forward_kl (Hinton's T^2 "
    "KL(teacher || student)), reverse_kl (T^2 KL(student || teacher)) or jsd (generalized "
    "JSD of GKD, --jsd_beta).",
    choices=tuple(losses.DIVERGENCES.names()),
)
JSD_BETA = Option(
    "jsd_beta",
    0.5,
    "kd with --divergence=jsd: beta of the generalized JSD "
    "beta KL(p_T || M) + (1 - beta) KL(p_S || M); 0 is forward KL, 1 reverse KL.",
    minimum=0,
    maximum=1,
)


def _build(student, teacher, data, options):
    return Distiller(
        student,
        teacher,
        temperature=options["temperature"],
        alpha=options["alpha"],
        logit_standardization=options["logit_standardization"],
        divergence=options["divergence"],
        jsd_beta=options["jsd_beta"],
    )


METHODS.register(
    "kd",
    Method(
        _build,
        (TEMPERATURE, ALPHA, LOGIT_STANDARDIZATION, DIVERGENCE, JSD_BETA),
        description="Hinton et al. 2015: (1-a) CE + a T^2 KL",
    ),
)
