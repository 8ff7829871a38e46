"""The multi-teacher methods of `tfkd distill`: AVER, EBKD, fixed weights, FitNet-MKD and CA-MKD
(with its Table 4 ablations), each a `MultiTeacherDistiller` with the paper's settings."""

from tfkd import methods, models
from tfkd import teacher_weighting as multi_teacher
from tfkd.distillers.base import LOGIT_STANDARDIZATION
from tfkd.distillers.features import HINT_WEIGHT
from tfkd.distillers.multi_teacher import MultiTeacherDistiller

LAMBDA1 = methods.Option("lambda1", 1.0, "Multi-teacher methods: weight of the weighted KD term.")
LAMBDA2 = methods.Option(
    "lambda2", 50.0, "ca_mkd: weight of the intermediate-feature term L_inter (paper: 50)."
)
OFFICIAL_SCALING = methods.Option(
    "official_scaling",
    False,
    "ca_mkd, ebkd: also divide the weighted terms by the number of "
    "teachers as the authors' code does (changes the effective lambda1 and lambda2).",
)
SKIP_FIRST_EPOCH = methods.Option(
    "skip_features_first_epoch",
    True,
    "ca_mkd, fitnet_mkd: leave the feature term out "
    "during the first epoch, as the authors' code does.",
)
FEATURE_LAYER = methods.Option(
    "mkd_feature_layer",
    models.FEATURES,
    "ca_mkd, fitnet_mkd: the layer matched in the student and every teacher.",
)
ABLATION = methods.Option(
    "ca_mkd_ablation",
    "none",
    "ca_mkd: the paper's Table 4 ablations: average_weights "
    "(w = w' = 1/K), no_features (no L_inter), logit_weights_for_features (w' = w).",
    choices=("none", "average_weights", "no_features", "logit_weights_for_features"),
)
WEIGHT_GRADIENT = methods.Option(
    "ca_mkd_weight_gradient",
    False,
    "ca_mkd: let the gradient flow through the feature "
    "weights w' as the authors' code does, instead of holding w' constant.",
)
FIXED_WEIGHTS = methods.Option(
    "fixed_teacher_weights", "", "fixed_mkd: a comma list of relative per-teacher weights."
)


def _build(weighting, **fixed):
    def build(student, teachers, data, options):
        settings = dict(fixed)
        for name in ("lambda1", "lambda2"):
            if name in options:
                settings.setdefault(name, options[name])
        return MultiTeacherDistiller(
            student,
            teachers,
            weighting=weighting,
            temperature=options["temperature"],
            logit_standardization=options.get("logit_standardization", False),
            official_scaling=options.get("official_scaling", False),
            skip_features_first_epoch=options.get("skip_features_first_epoch", True),
            feature_layer=options.get("mkd_feature_layer", models.FEATURES),
            feature_weight_gradient=options.get("ca_mkd_weight_gradient", False),
            **settings,
        )

    return build


def _build_ca_mkd(student, teachers, data, options):
    ablation = options["ca_mkd_ablation"]
    if ablation == "average_weights":
        return _build("aver", feature_weighting="aver")(student, teachers, data, options)
    if ablation == "no_features":
        return _build("ca_mkd", lambda2=0.0)(student, teachers, data, options)
    if ablation == "logit_weights_for_features":
        return _build("ca_mkd", feature_weighting="logits")(student, teachers, data, options)
    return _build("ca_mkd", feature_weighting="ca_mkd")(student, teachers, data, options)


def _build_fitnet_mkd(student, teachers, data, options):
    return _build("aver", feature_weighting="aver", lambda2=options["hint_weight"])(
        student, teachers, data, options
    )


def _build_fixed(student, teachers, data, options):
    weights = _fixed_weights(options)
    if weights is None:
        raise ValueError("--fixed_teacher_weights: fixed_mkd needs one weight per teacher")
    return _build("fixed", lambda2=0.0, fixed_weights=weights)(student, teachers, data, options)


def _fixed_weights(options):
    text = options["fixed_teacher_weights"]
    try:
        return [float(w) for w in text.split(",")] if text.strip() else None
    except ValueError:
        raise ValueError(
            f"--fixed_teacher_weights must be a comma list of numbers; got {text!r}"
        ) from None


def _ca_mkd_weighting(options):
    return ("aver" if options.get("ca_mkd_ablation") == "average_weights" else "ca_mkd"), None


def _weighting(name):
    return lambda options: (name, None)


_T, _LS = methods.TEMPERATURE, LOGIT_STANDARDIZATION
for _name, _method in (
    (
        "aver",
        methods.Method(
            _build("aver", lambda2=0.0),
            (_T, LAMBDA1, _LS),
            multi_teacher=True,
            weighting=_weighting("aver"),
            description="You et al. 2017: CE + l1 * mean_k T^2 KL_k",
        ),
    ),
    (
        "ebkd",
        methods.Method(
            _build("ebkd", lambda2=0.0),
            (_T, LAMBDA1, OFFICIAL_SCALING, _LS),
            multi_teacher=True,
            weighting=_weighting("ebkd"),
            min_teachers=multi_teacher.min_teachers("ebkd"),
            description="Kwon et al. 2020: entropy-weighted teachers",
        ),
    ),
    (
        "fixed_mkd",
        methods.Method(
            _build_fixed,
            (_T, LAMBDA1, FIXED_WEIGHTS),
            multi_teacher=True,
            weighting=lambda options: ("fixed", _fixed_weights(options)),
            description="Teachers with fixed user-given weights",
        ),
    ),
    (
        "fitnet_mkd",
        methods.Method(
            _build_fitnet_mkd,
            (_T, LAMBDA1, HINT_WEIGHT, SKIP_FIRST_EPOCH, FEATURE_LAYER),
            multi_teacher=True,
            needs_features=True,
            weighting=_weighting("aver"),
            description="AVER + mean over teachers of FitNet hints",
        ),
    ),
    (
        "ca_mkd",
        methods.Method(
            _build_ca_mkd,
            (
                _T,
                LAMBDA1,
                LAMBDA2,
                OFFICIAL_SCALING,
                SKIP_FIRST_EPOCH,
                FEATURE_LAYER,
                ABLATION,
                WEIGHT_GRADIENT,
                _LS,
            ),
            multi_teacher=True,
            needs_features=True,
            min_teachers=multi_teacher.min_teachers("ca_mkd"),
            weighting=_ca_mkd_weighting,
            description="Zhang et al. 2022: confidence-aware weights on logits and features",
        ),
    ),
):
    methods.METHODS.register(_name, _method)
