"""Partial distillation (Tang et al., arXiv:2002.03532): `--method=ls|kd_pt|kd_sim|kd_pt_sim|
kd_topk|kd_rel`.

Every method is the `kd` distiller with another teacher target rho (`tfkd.targets.partial`):
(1 - alpha) * CE(y, z_s) + alpha * T^2 * KL(rho || softmax(z_s / T)); `ls` is the cross-entropy
against the smoothed label alone.
"""

from tfkd.data.superclass import superclass_map
from tfkd.distillers.base import Distiller
from tfkd.methods import ALPHA, METHODS, TEMPERATURE, Method, Option
from tfkd.models.introspection import classifier_weights
from tfkd.targets.partial import LabelSmoothingTarget
from tfkd.teacher.loading import num_classes as count_classes

EPSILON = Option("epsilon", 0.1, "ls: label-smoothing factor in [0, 1].")
TOPK = Option("topk", 3, "kd_topk: number k of largest teacher probabilities kept, in [1, K].")
GAMMA = Option("gamma", 0.5, "kd_pt_sim: weight of the KD-pt target; 1 - gamma weighs KD-sim.")
SIM_BETA = Option(
    "sim_beta",
    1.0,
    "kd_sim, kd_pt_sim: power beta on the rescaled cosine similarities (1 + s) / 2.",
)
SIM_TEMPERATURE = Option(
    "sim_temperature",
    0.1,
    "kd_sim, kd_pt_sim: softmax temperature of the class similarities (> 0).",
)
CLASSIFIER_LAYER = Option(
    "classifier_layer",
    "classifier",
    "kd_sim, kd_pt_sim: the teacher's final Dense layer (kernel [features, K]).",
)
P_GT = Option("p_gt", 0.7, "kd_rel: mass on the true class (> 0), before normalising.")
P_SAME = Option("p_same", 0.05, "kd_rel: mass on each other class of the true class's super-class.")
P_OTHER = Option("p_other", 0.005, "kd_rel: mass on each class of another super-class.")
SUPERCLASS_MAP = Option(
    "superclass_map",
    "",
    "kd_rel: JSON file with the super-class of each class (default: the "
    "data set's own, e.g. CIFAR-100 coarse labels or synthetic).",
)


def _num_classes(student):
    classes = count_classes(student)
    if classes is None:
        raise ValueError(
            f"the student {student.name!r} does not report its number of classes "
            "yet; build it first (call it on a batch)"
        )
    return classes


def _distiller(student, teacher, options, target, names=(), **target_options):
    """KD with the registered `target`, built from the method options `names` and
    `target_options` (the distiller's temperature is passed to targets that take one)."""
    return Distiller(
        student,
        teacher,
        temperature=options["temperature"],
        alpha=options["alpha"],
        target=target,
        target_options={**{name: options[name] for name in names}, **target_options},
    )


def _teacher_classifier(student, teacher, options):
    weights = classifier_weights(teacher, options["classifier_layer"])
    if len(weights) != _num_classes(student):
        raise ValueError(
            f"--classifier_layer: layer {options['classifier_layer']!r} of the "
            f"teacher has {len(weights)} outputs but the student has "
            f"{_num_classes(student)} classes"
        )
    return weights


def _ls(student, teacher, data, options):
    # The loss is the cross-entropy against the smoothed label alone: alpha = 1, T = 1.
    return Distiller(
        student,
        None,
        temperature=1.0,
        alpha=1.0,
        distance="cross_entropy",
        target=LabelSmoothingTarget(_num_classes(student), options["epsilon"]),
    )


def _kd_pt(student, teacher, data, options):
    return _distiller(student, teacher, options, "kd_pt")


def _kd_sim(student, teacher, data, options):
    return _distiller(
        student,
        teacher,
        options,
        "kd_sim",
        ("sim_beta", "sim_temperature"),
        classifier_weights=_teacher_classifier(student, teacher, options),
    )


def _kd_pt_sim(student, teacher, data, options):
    return _distiller(
        student,
        teacher,
        options,
        "kd_pt_sim",
        ("gamma", "sim_beta", "sim_temperature"),
        classifier_weights=_teacher_classifier(student, teacher, options),
    )


def _kd_topk(student, teacher, data, options):
    classes = _num_classes(student)
    if not 1 <= options["topk"] <= classes:
        raise ValueError(
            f"--topk must be in [1, {classes}] for {classes} classes, got {options['topk']}"
        )
    return _distiller(student, teacher, options, "kd_topk", ("topk",))


def _kd_rel(student, teacher, data, options):
    superclass_of = superclass_map(data, options["superclass_map"], _num_classes(student))
    return _distiller(
        student, None, options, "kd_rel", ("p_gt", "p_same", "p_other"), superclass_of=superclass_of
    )


SIM_OPTIONS = (SIM_BETA, SIM_TEMPERATURE, CLASSIFIER_LAYER)
METHODS.register(
    "ls",
    Method(
        _ls,
        (EPSILON,),
        needs_teacher=False,
        description="label smoothing: CE against (1-eps) onehot + eps/K",
    ),
)
METHODS.register(
    "kd_pt",
    Method(
        _kd_pt,
        (TEMPERATURE, ALPHA),
        description="Tang et al. 2020: teacher's p_t only, rest uniform",
    ),
)
METHODS.register(
    "kd_sim",
    Method(
        _kd_sim,
        (TEMPERATURE, ALPHA, *SIM_OPTIONS),
        description="Tang et al. 2020: classifier-weight similarities",
    ),
)
METHODS.register(
    "kd_pt_sim",
    Method(
        _kd_pt_sim,
        (TEMPERATURE, ALPHA, GAMMA, *SIM_OPTIONS),
        description="Tang et al. 2020: g KD-pt + (1-g) KD-sim",
    ),
)
METHODS.register(
    "kd_topk",
    Method(
        _kd_topk,
        (TEMPERATURE, ALPHA, TOPK),
        description="Tang et al. 2020: top-k teacher probs, rest uniform",
    ),
)
METHODS.register(
    "kd_rel",
    Method(
        _kd_rel,
        (TEMPERATURE, ALPHA, P_GT, P_SAME, P_OTHER, SUPERCLASS_MAP),
        needs_teacher=False,
        description="Tang et al. 2020: masses from a super-class map",
    ),
)
