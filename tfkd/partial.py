"""Partial distillation (Tang et al., arXiv:2002.03532): `--method=ls|kd_pt|kd_sim|kd_pt_sim|
kd_topk|kd_rel`.

Every method is the `kd` distiller with another teacher target rho:
(1 - alpha) * CE(y, z_s) + alpha * T^2 * KL(rho || softmax(z_s / T)); `ls` is the cross-entropy
against the smoothed label alone. The targets are the pure functions of `tfkd.partial_targets`,
wrapped here as transforms `transform(teacher_logits, labels)` registered in `TARGETS`.
"""
import json
import os

import numpy as np
from keras import ops

from tfkd import partial_targets
from tfkd.distillers import Distiller
from tfkd.distillers.base import num_classes as count_classes
from tfkd.methods import ALPHA, METHODS, TEMPERATURE, Method, Option
from tfkd.targets import TARGETS

EPSILON = Option("epsilon", 0.1, "ls: label-smoothing factor in [0, 1].")
TOPK = Option("topk", 3, "kd_topk: number k of largest teacher probabilities kept, in [1, K].")
GAMMA = Option("gamma", 0.5, "kd_pt_sim: weight of the KD-pt target; 1 - gamma weighs KD-sim.")
SIM_BETA = Option("sim_beta", 1.0, "kd_sim, kd_pt_sim: power beta on the rescaled cosine "
                  "similarities (1 + s) / 2.")
SIM_TEMPERATURE = Option("sim_temperature", 0.1, "kd_sim, kd_pt_sim: softmax temperature of "
                         "the class similarities (> 0).")
CLASSIFIER_LAYER = Option("classifier_layer", "classifier", "kd_sim, kd_pt_sim: the teacher's "
                          "final Dense layer (kernel [features, K]).")
P_GT = Option("p_gt", 0.7, "kd_rel: mass on the true class (> 0), before normalising.")
P_SAME = Option("p_same", 0.05,
                "kd_rel: mass on each other class of the true class's super-class.")
P_OTHER = Option("p_other", 0.005, "kd_rel: mass on each class of another super-class.")
SUPERCLASS_MAP = Option("superclass_map", "",
                        "kd_rel: JSON file with the super-class of each class (default: the "
                        "data set's own, e.g. CIFAR-100 coarse labels or synthetic).")


# ---- teacher-target transforms ---------------------------------------------------------------
class _TeacherProbs:
    """Base of the transforms that read softmax(teacher_logits / T)."""

    needs_teacher = True

    def __init__(self, temperature=4.0):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def teacher_probs(self, teacher_logits):
        return ops.softmax(teacher_logits / self.temperature, axis=-1)


class LabelSmoothingTarget:
    """(1 - epsilon) * onehot + epsilon / K; ignores the teacher."""

    needs_teacher = False

    def __init__(self, num_classes, epsilon=0.1, **unused):
        partial_targets.label_smoothing(np.zeros(1, "int32"), num_classes, epsilon)  # checks
        self.num_classes, self.epsilon = int(num_classes), float(epsilon)

    def __call__(self, teacher_logits, labels):
        return partial_targets.label_smoothing(labels, self.num_classes, self.epsilon)


class PtTarget(_TeacherProbs):
    """KD-pt: the teacher's p_t on the true class, the rest uniform."""

    def __init__(self, temperature=4.0, **unused):
        super().__init__(temperature)

    def __call__(self, teacher_logits, labels):
        return partial_targets.kd_pt(self.teacher_probs(teacher_logits), labels)


class SimTarget:
    """KD-sim: the class-similarity row of the true class; needs no teacher forward pass."""

    needs_teacher = False

    def __init__(self, classifier_weights, sim_beta=1.0, sim_temperature=0.1, **unused):
        classifier_weights = np.asarray(classifier_weights, "float32")
        partial_targets.similarity_targets(classifier_weights, sim_beta, sim_temperature)
        self.classifier_weights = ops.convert_to_tensor(classifier_weights)
        self.beta, self.sim_temperature = sim_beta, sim_temperature

    def __call__(self, teacher_logits, labels):
        # Recomputing the [K, K] table costs one K x F product per step: nothing next to a model.
        return partial_targets.kd_sim(self.classifier_weights, labels, self.beta,
                                      self.sim_temperature)


class PtSimTarget(_TeacherProbs):
    """KD-pt+sim: gamma * KD-pt + (1 - gamma) * KD-sim."""

    def __init__(self, classifier_weights, temperature=4.0, gamma=0.5, sim_beta=1.0,
                 sim_temperature=0.1, **unused):
        super().__init__(temperature)
        classifier_weights = np.asarray(classifier_weights, "float32")
        uniform = np.full((1, len(classifier_weights)), 1.0 / len(classifier_weights), "float32")
        # Checks every argument once, eagerly, rather than at the first training step.
        partial_targets.kd_pt_sim(uniform, classifier_weights, np.zeros(1, "int32"), gamma,
                                  sim_beta, sim_temperature)
        self.classifier_weights = ops.convert_to_tensor(classifier_weights)
        self.gamma, self.beta, self.sim_temperature = gamma, sim_beta, sim_temperature

    def __call__(self, teacher_logits, labels):
        return partial_targets.kd_pt_sim(self.teacher_probs(teacher_logits),
                                         self.classifier_weights, labels, self.gamma, self.beta,
                                         self.sim_temperature)


class TopkTarget(_TeacherProbs):
    """KD-topk: the k largest teacher probabilities, the rest uniform."""

    def __init__(self, temperature=4.0, topk=3, **unused):
        super().__init__(temperature)
        self.topk = topk

    def __call__(self, teacher_logits, labels):
        return partial_targets.kd_topk(self.teacher_probs(teacher_logits), self.topk)


class RelTarget:
    """KD-rel: fixed masses on the true class, its super-class and the rest; no teacher."""

    needs_teacher = False

    def __init__(self, superclass_of, p_gt=0.7, p_same=0.05, p_other=0.005, **unused):
        partial_targets.kd_rel(np.zeros(1, "int32"), superclass_of, p_gt, p_same, p_other)
        self.superclass_of = np.asarray(superclass_of, "int32")
        self.p_gt, self.p_same, self.p_other = p_gt, p_same, p_other

    def __call__(self, teacher_logits, labels):
        return partial_targets.kd_rel(labels, self.superclass_of, self.p_gt, self.p_same,
                                      self.p_other)


TARGET_CLASSES = {"label_smoothing": LabelSmoothingTarget, "kd_pt": PtTarget,
                  "kd_sim": SimTarget, "kd_pt_sim": PtSimTarget, "kd_topk": TopkTarget,
                  "kd_rel": RelTarget}
for _name, _target in TARGET_CLASSES.items():
    TARGETS.register(_name, _target)


# ---- what the targets need from the teacher and the data ------------------------------------
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
        raise ValueError(f"--classifier_layer: the teacher has no layer {layer_name!r} (its "
                         f"layers: {names}); KD-sim needs the final Dense layer's weights, "
                         "which a SavedModel teacher does not expose: load a .keras teacher"
                         ) from None
    kernel = getattr(layer, "kernel", None)
    if kernel is None or len(kernel.shape) != 2:
        raise ValueError(f"--classifier_layer: layer {layer_name!r} of the teacher has no 2-D "
                         f"kernel [features, classes]; name the final Dense layer")
    return np.asarray(ops.convert_to_numpy(kernel), "float32").T


def read_superclass_map(path, num_classes, class_names=None):
    """Reads a super-class map from JSON: either a list with the super-class of each class, or an
    object {super-class name: [class index or class name, ...]} covering every class once.

    Returns:
      int64 [num_classes].
    """
    flag = "--superclass_map"
    if not os.path.isfile(path):
        raise ValueError(f"{flag}: {path} does not exist")
    try:
        with open(path) as handle:
            content = json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{flag}: {path} is not valid JSON ({error})") from None
    if isinstance(content, dict):
        lookup = {name: index for index, name in enumerate(class_names or [])}
        mapping = np.full(num_classes, -1, np.int64)
        for group, (_, members) in enumerate(content.items()):
            for member in members:
                index = lookup.get(member, member) if isinstance(member, str) else member
                if not isinstance(index, int) or not 0 <= index < num_classes:
                    raise ValueError(f"{flag}: {path}: {member!r} is not a class index in "
                                     f"[0, {num_classes}) or a class name of the data set")
                if mapping[index] >= 0:
                    raise ValueError(f"{flag}: {path}: class {member!r} is listed twice")
                mapping[index] = group
        missing = np.flatnonzero(mapping < 0)
        if missing.size:
            raise ValueError(f"{flag}: {path} gives no super-class to classes "
                             f"{missing.tolist()}")
        return mapping
    if (isinstance(content, list) and len(content) == num_classes
            and all(isinstance(value, int) for value in content)):
        return np.asarray(content, np.int64)
    raise ValueError(f"{flag}: {path} must hold a list of {num_classes} integers (the "
                     "super-class of each class) or an object {super-class: [classes]}")


def superclass_map(bundle, path, num_classes):
    """The super-class of each class from `path` (JSON) if given, else the data set's own."""
    if path:
        return read_superclass_map(path, num_classes, getattr(bundle, "class_names", None))
    superclass_of = getattr(bundle, "superclass_of", None)
    if superclass_of is None:
        name = getattr(bundle, "name", "this data set")
        raise ValueError(f"--method=kd_rel needs a super-class map: data set {name!r} has none; "
                         "pass --superclass_map=FILE.json")
    if len(superclass_of) != num_classes:
        raise ValueError(f"the super-class map has {len(superclass_of)} entries for "
                         f"{num_classes} classes")
    return np.asarray(superclass_of, np.int64)


# ---- methods ----------------------------------------------------------------------------------
def _num_classes(student):
    classes = count_classes(student)
    if classes is None:
        raise ValueError(f"the student {student.name!r} does not report its number of classes "
                         "yet; build it first (call it on a batch)")
    return classes


def _distiller(student, teacher, options, target, **target_options):
    own = {name: value for name, value in options.items() if name not in ("temperature", "alpha")}
    return Distiller(student, teacher, temperature=options["temperature"],
                     alpha=options["alpha"], target=target,
                     target_options={**own, **target_options})


def _teacher_classifier(student, teacher, options):
    weights = classifier_weights(teacher, options["classifier_layer"])
    if len(weights) != _num_classes(student):
        raise ValueError(f"--classifier_layer: layer {options['classifier_layer']!r} of the "
                         f"teacher has {len(weights)} outputs but the student has "
                         f"{_num_classes(student)} classes")
    return weights


def _ls(student, teacher, data, options):
    # The loss is the cross-entropy against the smoothed label alone: alpha = 1, T = 1.
    return Distiller(student, None, temperature=1.0, alpha=1.0, distance="cross_entropy",
                     target=LabelSmoothingTarget(_num_classes(student), options["epsilon"]))


def _kd_pt(student, teacher, data, options):
    return _distiller(student, teacher, options, "kd_pt")


def _kd_sim(student, teacher, data, options):
    return _distiller(student, teacher, options, "kd_sim",
                      classifier_weights=_teacher_classifier(student, teacher, options))


def _kd_pt_sim(student, teacher, data, options):
    return _distiller(student, teacher, options, "kd_pt_sim",
                      classifier_weights=_teacher_classifier(student, teacher, options))


def _kd_topk(student, teacher, data, options):
    classes = _num_classes(student)
    if not 1 <= options["topk"] <= classes:
        raise ValueError(f"--topk must be in [1, {classes}] for {classes} classes, "
                         f"got {options['topk']}")
    return _distiller(student, teacher, options, "kd_topk")


def _kd_rel(student, teacher, data, options):
    superclass_of = superclass_map(data, options["superclass_map"], _num_classes(student))
    return _distiller(student, None, options, "kd_rel", superclass_of=superclass_of)


SIM_OPTIONS = (SIM_BETA, SIM_TEMPERATURE, CLASSIFIER_LAYER)
METHODS.register("ls", Method(_ls, (EPSILON,), needs_teacher=False,
                              description="label smoothing: CE against (1-eps) onehot + eps/K"))
METHODS.register("kd_pt", Method(_kd_pt, (TEMPERATURE, ALPHA),
                                 description="Tang et al. 2020: teacher's p_t only, rest uniform"))
METHODS.register("kd_sim", Method(_kd_sim, (TEMPERATURE, ALPHA, *SIM_OPTIONS),
                                  description="Tang et al. 2020: classifier-weight similarities"))
METHODS.register("kd_pt_sim", Method(_kd_pt_sim, (TEMPERATURE, ALPHA, GAMMA, *SIM_OPTIONS),
                                     description="Tang et al. 2020: g KD-pt + (1-g) KD-sim"))
METHODS.register("kd_topk", Method(_kd_topk, (TEMPERATURE, ALPHA, TOPK),
                                   description="Tang et al. 2020: top-k teacher probs, rest "
                                               "uniform"))
METHODS.register("kd_rel", Method(_kd_rel, (TEMPERATURE, ALPHA, P_GT, P_SAME, P_OTHER,
                                            SUPERCLASS_MAP), needs_teacher=False,
                                  description="Tang et al. 2020: masses from a super-class map"))
