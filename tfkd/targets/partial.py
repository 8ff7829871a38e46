"""Partial-distillation teacher targets (Tang et al., arXiv:2002.03532) as registered transforms
`transform(teacher_logits, labels) -> [..., K]`, wrapping the pure functions of
`tfkd.targets.hand_crafted`."""

import numpy as np
from keras import ops

from tfkd.targets import hand_crafted
from tfkd.targets.catalog import TARGETS


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

    def __init__(self, num_classes, epsilon=0.1):
        hand_crafted.label_smoothing(np.zeros(1, "int32"), num_classes, epsilon)  # checks
        self.num_classes, self.epsilon = int(num_classes), float(epsilon)

    def __call__(self, teacher_logits, labels):
        return hand_crafted.label_smoothing(labels, self.num_classes, self.epsilon)


class PtTarget(_TeacherProbs):
    """KD-pt: the teacher's p_t on the true class, the rest uniform."""

    def __init__(self, temperature=4.0):
        super().__init__(temperature)

    def __call__(self, teacher_logits, labels):
        return hand_crafted.kd_pt(self.teacher_probs(teacher_logits), labels)


class SimTarget:
    """KD-sim: the class-similarity row of the true class; needs no teacher forward pass."""

    needs_teacher = False

    def __init__(self, classifier_weights, sim_beta=1.0, sim_temperature=0.1):
        classifier_weights = np.asarray(classifier_weights, "float32")
        hand_crafted.similarity_targets(classifier_weights, sim_beta, sim_temperature)
        self.classifier_weights = ops.convert_to_tensor(classifier_weights)
        self.beta, self.sim_temperature = sim_beta, sim_temperature

    def __call__(self, teacher_logits, labels):
        # Recomputing the [K, K] table costs one K x F product per step: nothing next to a model.
        return hand_crafted.kd_sim(self.classifier_weights, labels, self.beta, self.sim_temperature)


class PtSimTarget(_TeacherProbs):
    """KD-pt+sim: gamma * KD-pt + (1 - gamma) * KD-sim."""

    def __init__(
        self, classifier_weights, temperature=4.0, gamma=0.5, sim_beta=1.0, sim_temperature=0.1
    ):
        super().__init__(temperature)
        classifier_weights = np.asarray(classifier_weights, "float32")
        uniform = np.full((1, len(classifier_weights)), 1.0 / len(classifier_weights), "float32")
        # Checks every argument once, eagerly, rather than at the first training step.
        hand_crafted.kd_pt_sim(
            uniform, classifier_weights, np.zeros(1, "int32"), gamma, sim_beta, sim_temperature
        )
        self.classifier_weights = ops.convert_to_tensor(classifier_weights)
        self.gamma, self.beta, self.sim_temperature = gamma, sim_beta, sim_temperature

    def __call__(self, teacher_logits, labels):
        return hand_crafted.kd_pt_sim(
            self.teacher_probs(teacher_logits),
            self.classifier_weights,
            labels,
            self.gamma,
            self.beta,
            self.sim_temperature,
        )


class TopkTarget(_TeacherProbs):
    """KD-topk: the k largest teacher probabilities, the rest uniform."""

    def __init__(self, temperature=4.0, topk=3):
        super().__init__(temperature)
        self.topk = topk

    def __call__(self, teacher_logits, labels):
        return hand_crafted.kd_topk(self.teacher_probs(teacher_logits), self.topk)


class RelTarget:
    """KD-rel: fixed masses on the true class, its super-class and the rest; no teacher."""

    needs_teacher = False

    def __init__(self, superclass_of, p_gt=0.7, p_same=0.05, p_other=0.005):
        hand_crafted.kd_rel(np.zeros(1, "int32"), superclass_of, p_gt, p_same, p_other)
        self.superclass_of = np.asarray(superclass_of, "int32")
        self.p_gt, self.p_same, self.p_other = p_gt, p_same, p_other

    def __call__(self, teacher_logits, labels):
        return hand_crafted.kd_rel(labels, self.superclass_of, self.p_gt, self.p_same, self.p_other)


TARGET_CLASSES = {
    "label_smoothing": LabelSmoothingTarget,
    "kd_pt": PtTarget,
    "kd_sim": SimTarget,
    "kd_pt_sim": PtSimTarget,
    "kd_topk": TopkTarget,
    "kd_rel": RelTarget,
}
for _name, _target in TARGET_CLASSES.items():
    TARGETS.register(_name, _target)
