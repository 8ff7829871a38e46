"""`MultiTeacherDistiller`: AVER, EBKD, fixed weights, FitNet-MKD and CA-MKD as one `keras.Model`.

Per example (per token for sequence outputs, the weights then computed per token from per-token
labels), with K frozen teachers (Zhang et al., "Confidence-Aware Multi-Teacher Knowledge
Distillation", Eq. 1-9, and the authors' code github.com/Rorozhl/CA-MKD):

    L = CE(y, z_S) + lambda1 * sum_k w_k T^2 KL(softmax(z_k/T) || softmax(z_S/T))
                   + lambda2 * sum_k w'_k MSE(F_k, r_k(h_S))

w comes from `tfkd.teacher_weighting.teacher_weights`. The feature term matches the student's
feature map h_S, resized to teacher k's spatial size and mapped by a trainable adapter r_k
(1x1 convolution + batch norm + ReLU; dense + ReLU for vectors), to teacher k's feature map F_k.
Its weights w' are CA-MKD's confidence weights of CE(y, head_k(r_k(h_S))), head_k being teacher
k's frozen pooling + classifier (`feature_weighting="ca_mkd"`), the logit weights w
(`"logits"`) or 1 / K (`"aver"`, FitNet-MKD).

w' is a weight, held constant in the gradient as the equations read; `feature_weight_gradient=True`
lets the gradient flow through w' too, as the authors' code does (it never detaches w'), which lets
the student lower L_inter by making a teacher's head classify its adapted features badly. The
adapters train with the student and are not part of it.
"""

import keras
from keras import ops

from tfkd import losses, models
from tfkd import teacher_weighting as multi_teacher
from tfkd.distillers.base import Distiller
from tfkd.distillers.features import build_adapter, check_graph, layer_output
from tfkd.teacher.loading import check_class_counts, check_logits

FEATURE_WEIGHTINGS = ("ca_mkd", "logits", "aver")


def _teacher_head(teacher, layer_name, role):
    """Teacher k's frozen layers from `layer_name` to the logits."""
    if layer_name == models.FEATURES:
        return models.head(teacher)
    try:
        return keras.Model(
            teacher.get_layer(layer_name).output, teacher.output, name=f"{teacher.name}_head"
        )
    except ValueError:
        raise ValueError(
            f"feature_layer: {role}'s logits do not follow from layer "
            f"{layer_name!r} alone (e.g. a residual connection skips it); "
            "feature_weighting='ca_mkd' needs a layer the head starts from"
        ) from None


def _check_settings(count, weighting, temperature, lambda1, lambda2, feature_weighting):
    """Fills the paper's defaults and checks the settings; returns (lambda2, feature_weighting)."""
    multi_teacher.WEIGHTINGS.get(weighting)
    if lambda2 is None:
        lambda2 = 50.0 if weighting == "ca_mkd" else 0.0
    if feature_weighting is None:
        feature_weighting = "ca_mkd" if weighting == "ca_mkd" else "aver"
    if feature_weighting not in FEATURE_WEIGHTINGS:
        raise ValueError(
            f"feature_weighting must be one of {', '.join(FEATURE_WEIGHTINGS)}; "
            f"got {feature_weighting!r}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    for name, value in (("lambda1", lambda1), ("lambda2", lambda2)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    # (what, its minimum teacher count); CA-MKD's feature weights divide by K - 1 too.
    needs = [(f"weighting {weighting!r}", multi_teacher.min_teachers(weighting))]
    if lambda2 > 0 and feature_weighting == "ca_mkd":
        needs.append(("feature_weighting 'ca_mkd'", 2))
    short = [(what, minimum) for what, minimum in needs if count < minimum]
    if short:
        raise ValueError(
            f"{' and '.join(what for what, _ in short)} needs at least "
            f"{max(minimum for _, minimum in short)} teachers; got {count}"
        )
    return lambda2, feature_weighting


@keras.saving.register_keras_serializable(package="tfkd")
class MultiTeacherDistiller(Distiller):
    """A student distilled from several frozen teachers, with per-example teacher weights.

    Args:
        student: a `keras.Model` giving logits.
        teachers: a list of K `keras.Model`s giving logits over the same classes.
        weighting: logit weights w: `ca_mkd`, `ebkd`, `aver` or `fixed`.
        temperature: T (> 0).
        lambda1: weight of L_KD.
        lambda2: weight of the feature term; None means the paper's choice: 50 for `ca_mkd`,
            0 (no feature term, no adapters) otherwise.
        feature_weighting: w' of the feature term: `ca_mkd`, `logits` or `aver`; None means
            `ca_mkd` for `weighting="ca_mkd"`, `aver` otherwise.
        feature_layer: name of the matched layer in the student and every teacher.
        skip_features_first_epoch: leave the feature term out of the training loss during the
            first epoch of `fit`, as the authors' code does. The epoch is a non-trainable
            variable set by a callback that `fit` adds; `train_on_batch` or a custom loop that
            does not set `distiller.epoch` therefore never includes the feature term.
        official_scaling: apply the authors' code's extra factors (see
            `tfkd.teacher_weighting.official_factors`): 1/K on CA-MKD's both terms, (K-1)/K on EBKD's.
        fixed_weights: K relative weights for `weighting="fixed"`.
        feature_weight_gradient: let the gradient flow through CA-MKD's w' (authors' code)
            instead of treating w' as a constant.

    Metrics: `loss`, `student_loss` (CE), `distillation_loss` (L_KD), `feature_loss` (L_inter,
    when lambda2 > 0), `teacher_<k>_weight` (mean w_k) and, for CA-MKD's w',
    `teacher_<k>_feature_weight`. `evaluate` always includes the feature term in `loss`.
    """

    counts_epochs = True  # the feature term sits out the first epoch

    def __init__(
        self,
        student,
        teachers,
        weighting="ca_mkd",
        temperature=4.0,
        lambda1=1.0,
        lambda2=None,
        feature_weighting=None,
        feature_layer=models.FEATURES,
        skip_features_first_epoch=True,
        official_scaling=False,
        fixed_weights=None,
        feature_weight_gradient=False,
        **kwargs,
    ):
        if isinstance(teachers, keras.Model) or not teachers:
            raise ValueError("teachers must be a non-empty list of keras.Model")
        teachers = list(teachers)
        count = len(teachers)
        lambda2, feature_weighting = _check_settings(
            count, weighting, temperature, lambda1, lambda2, feature_weighting
        )
        fixed_weights = (
            multi_teacher.check_fixed_weights(fixed_weights, count).tolist()
            if weighting == "fixed"
            else None
        )
        for k, teacher in enumerate(teachers):
            check_class_counts(student, teacher, f"teacher {k}")
            teacher.trainable = False
        # No single teacher and no target transform: the terms come from `teachers`.
        super().__init__(student, None, temperature=temperature, alpha=1.0, target=None, **kwargs)
        self.fixed_weights = fixed_weights
        self.teachers = teachers
        self.weighting = weighting
        self.feature_weighting = feature_weighting
        self.lambda1, self.lambda2 = float(lambda1), float(lambda2)
        self.uses_features = uses_features = lambda2 > 0
        self.skip_features_first_epoch = bool(skip_features_first_epoch)
        self.official_scaling = bool(official_scaling)
        self.feature_weight_gradient = bool(feature_weight_gradient)
        self.kd_factor, self.feature_factor = (
            multi_teacher.official_factors(weighting, feature_weighting, count)
            if official_scaling
            else (1.0, 1.0)
        )
        if uses_features:
            self._build_feature_path(feature_layer)

        names = ["loss", "student_loss", "distillation_loss"]
        names += ["feature_loss"] if uses_features else []
        names += [f"teacher_{k}_weight" for k in range(count)]
        if uses_features and feature_weighting == "ca_mkd":
            names += [f"teacher_{k}_feature_weight" for k in range(count)]
        self.set_loss_terms(names)

    def _build_feature_path(self, layer_name):
        student = self.student
        check_graph(student, "the student")
        for k, teacher in enumerate(self.teachers):
            check_graph(teacher, f"teacher {k}")
        self.student_view = keras.Model(
            student.input,
            [layer_output(student, layer_name, "the student"), student.output],
            name=f"{student.name}_features",
        )
        self.teacher_views, self.adapters, self.teacher_heads = [], [], []
        student_shape = self.student_view.output[0].shape[1:]
        for k, teacher in enumerate(self.teachers):
            role = f"teacher {k}"
            view = keras.Model(
                teacher.input,
                [layer_output(teacher, layer_name, role), teacher.output],
                name=f"teacher_{k}_features",
            )
            self.teacher_views.append(view)
            self.adapters.append(
                build_adapter(student_shape, view.output[0].shape[1:], f"adapter_{k}")
            )
            if self.feature_weighting == "ca_mkd":
                self.teacher_heads.append(_teacher_head(teacher, layer_name, role))

    # ---- forward and losses ------------------------------------------------------------------
    @property
    def reads_teacher_features(self):
        return self.uses_features

    def teacher_outputs(self, x):
        """Frozen teachers in inference mode: (logits [K, ..., C], feature maps list or None)."""
        if not self.uses_features:
            return self.arrange_teacher_outputs([t(x, training=False) for t in self.teachers], None)
        outputs = [view(x, training=False) for view in self.teacher_views]
        return self.arrange_teacher_outputs(
            [logit for _, logit in outputs], [ops.stop_gradient(feature) for feature, _ in outputs]
        )

    def arrange_teacher_outputs(self, logits, features):
        """K x [..., C] -> [K, ..., C], after checking that the teachers agree on C; the K
        feature maps as a list."""
        for k in range(1, len(logits)):
            check_logits(
                logits[0],
                logits[k],
                self.teachers[0],
                self.teachers[k],
                f"teacher {k}",
                "teacher 0",
            )
        return ops.stop_gradient(ops.stack(logits)), features

    def feature_terms(self, y, student_features, teacher_features, logit_weights, training):
        """(L_inter [B], w' [B, K] or None) for the student's feature map [B, ...]."""
        mapped = [adapter(student_features, training=training) for adapter in self.adapters]
        errors = ops.stack(
            [multi_teacher.feature_mse(f, m) for f, m in zip(teacher_features, mapped)], axis=-1
        )  # [B, K]
        own_weights = None
        if self.feature_weighting == "ca_mkd":
            head_losses = ops.stack(
                [
                    losses.cross_entropy(y, head(m, training=False))
                    for head, m in zip(self.teacher_heads, mapped)
                ],
                axis=0,
            )
            if not self.feature_weight_gradient:
                head_losses = ops.stop_gradient(head_losses)
            weights = own_weights = multi_teacher.confidence_weights(head_losses)
        elif self.feature_weighting == "logits":
            weights = logit_weights
        else:
            weights = ops.ones_like(errors) / len(self.teachers)
        return self.feature_factor * ops.sum(weights * errors, axis=-1), own_weights

    def multi_teacher_terms(
        self, y, student_logits, student_features, teacher_logits, teacher_features, training
    ):
        """Every per-element term [...] ([B], or [B, T] per token of sequence outputs, where the
        weights are per token), named as in `loss_terms`. With `logit_standardization` the KD
        term reads z-scored logits; the teacher weights read the raw ones."""
        student_loss = losses.cross_entropy(y, student_logits)
        weights = multi_teacher.teacher_weights(
            teacher_logits, y, self.weighting, self.fixed_weights
        )
        distilled_teachers, distilled_student = self.distillation_logits(
            teacher_logits, student_logits
        )
        distillation = self.kd_factor * multi_teacher.weighted_distillation(
            weights, distilled_teachers, distilled_student, self.temperature
        )
        loss = student_loss + self.lambda1 * distillation
        terms = {"student_loss": student_loss, "distillation_loss": distillation}
        if self.uses_features:
            feature_loss, feature_weights = self.feature_terms(
                y, student_features, teacher_features, weights, training
            )
            scale = self.lambda2
            if training and self.skip_features_first_epoch:
                scale = scale * ops.cast(self.epoch.value >= 1, "float32")
            loss = loss + scale * feature_loss
            terms["feature_loss"] = feature_loss
            if feature_weights is not None:
                terms.update(
                    {
                        f"teacher_{k}_feature_weight": feature_weights[..., k]
                        for k in range(len(self.teachers))
                    }
                )
        terms.update({f"teacher_{k}_weight": weights[..., k] for k in range(len(self.teachers))})
        terms["loss"] = loss
        return terms

    def student_outputs(self, x, training):
        if not self.uses_features:
            return self.student(x, training=training), None
        features, logits = self.student_view(x, training=training)
        return logits, features

    def check_step_logits(self, student_logits, teacher_logits):
        # The teachers agree with each other (`_stack_logits`); the student must too.
        check_logits(student_logits, teacher_logits, self.student, self.teachers[0], "teacher 0")

    def compute_terms(self, x, y, student_logits, teacher_logits, training, features=None):
        student_features, teacher_features = features if features is not None else (None, None)
        return self.multi_teacher_terms(
            y, student_logits, student_features, teacher_logits, teacher_features, training
        )

    def input_models(self):
        return [self.student, *self.teachers]

    def named_teachers(self):
        return [(teacher, f"teacher {k}") for k, teacher in enumerate(self.teachers)]
