"""Multi-teacher weightings and `MultiTeacherDistiller` against NumPy references."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import tfkd
from tfkd import teacher_weighting as multi_teacher


# ---- NumPy references, written from the CA-MKD paper / issue equations -------------------------
def _softmax(z, axis=-1):
    z = z - z.max(axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis, keepdims=True)


def _ce(labels, logits):
    return -np.log(_softmax(logits)[np.arange(len(labels)), labels])


def _kl(teacher, student, t):
    p, q = _softmax(teacher / t), _softmax(student / t)
    return t**2 * np.sum(p * (np.log(p) - np.log(q)), -1)


def _reference_weights(logits, labels, method, fixed=None):
    """logits [K, B, C] -> [B, K]."""
    count, batch = logits.shape[:2]
    if method == "aver":
        return np.full((batch, count), 1.0 / count)
    if method == "fixed":
        return np.tile(np.asarray(fixed, float) / np.sum(fixed), (batch, 1))
    if method == "ca_mkd":
        losses = np.stack([_ce(labels, logits[k]) for k in range(count)])  # [K, B]
        return ((1 - _softmax(losses, axis=0)) / (count - 1)).T
    probs = _softmax(logits)
    entropy = -np.sum(probs * np.log(probs), -1)  # [K, B]
    return ((1 - entropy / entropy.sum(0)) / (count - 1)).T


def _batch(count=3, batch=6, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(count, batch, classes)) * 2).astype("float32")
    return logits, rng.integers(0, classes, batch)


@pytest.mark.parametrize(
    "method,fixed", [("ca_mkd", None), ("aver", None), ("ebkd", None), ("fixed", [1.0, 3.0, 4.0])]
)
def test_weights_match_reference_and_sum_to_one(method, fixed):
    logits, labels = _batch()
    got = np.asarray(multi_teacher.teacher_weights(logits, labels, method, fixed))
    assert got.shape == (6, 3)
    np.testing.assert_allclose(got, _reference_weights(logits, labels, method, fixed), rtol=1e-5)
    np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-6)
    # A list of per-teacher [B, C] arrays is accepted too.
    again = multi_teacher.teacher_weights(list(logits), labels, method, fixed)
    np.testing.assert_allclose(np.asarray(again), got, rtol=1e-6)


def test_ca_mkd_prefers_the_right_teacher_and_ebkd_the_sharper_one():
    labels = np.array([0, 1])
    right_but_soft = np.array([[2.0, 1.0, 0.0], [1.0, 2.0, 0.0]])  # argmax = label
    wrong_but_sharp = np.array([[0.0, 9.0, 0.0], [0.0, 0.0, 9.0]])  # confident, wrong
    logits = np.stack([right_but_soft, wrong_but_sharp]).astype("float32")
    ca = np.asarray(multi_teacher.teacher_weights(logits, labels, "ca_mkd"))
    eb = np.asarray(multi_teacher.teacher_weights(logits, labels, "ebkd"))
    assert np.all(ca[:, 0] > ca[:, 1]) and np.all(eb[:, 1] > eb[:, 0])
    # Entropies of exactly one-hot teachers are 0 (no NaN) and the weights fall back to 1 / K.
    one_hot = np.stack([np.eye(3)[[0, 1]] * 1e4] * 2).astype("float32")
    np.testing.assert_allclose(
        np.asarray(multi_teacher.teacher_weights(one_hot, labels, "ebkd")), 0.5
    )


@pytest.mark.parametrize("method", ["ca_mkd", "ebkd"])
def test_weightings_dividing_by_k_minus_1_need_two_teachers(method):
    logits, labels = _batch(count=1)
    with pytest.raises(ValueError, match="at least 2 teachers"):
        multi_teacher.teacher_weights(logits, labels, method)


def test_bad_weighting_and_fixed_weights():
    logits, labels = _batch()
    with pytest.raises(ValueError, match="known: aver, ca_mkd, ebkd, fixed"):
        multi_teacher.teacher_weights(logits, labels, "median")
    for fixed, message in (
        ([1.0, 2.0], "one weight per teacher"),
        ([1.0, -1.0, 1.0], ">= 0"),
        (None, "needs fixed_weights"),
    ):
        with pytest.raises(ValueError, match=message):
            multi_teacher.teacher_weights(logits, labels, "fixed", fixed)


def test_weighted_distillation_matches_reference():
    logits, labels = _batch(seed=1)
    student = np.random.default_rng(2).normal(size=logits.shape[1:]).astype("float32")
    weights = _reference_weights(logits, labels, "ca_mkd")
    got = multi_teacher.weighted_distillation(weights.astype("float32"), logits, student, 4.0)
    expected = sum(weights[:, k] * _kl(logits[k], student, 4.0) for k in range(3))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)


def test_adaptive_pool_and_resize():
    x = np.random.default_rng(3).normal(size=(2, 7, 5, 3)).astype("float32")
    got = np.asarray(multi_teacher.resize_features(x, (3, 2)))
    expected = np.zeros((2, 3, 2, 3))
    for i in range(3):  # PyTorch's adaptive windows
        for j in range(2):
            rows = slice(i * 7 // 3, -(-(i + 1) * 7 // 3))
            cols = slice(j * 5 // 2, -(-(j + 1) * 5 // 2))
            expected[:, i, j] = x[:, rows, cols].mean(axis=(1, 2))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(multi_teacher.resize_features(x, (7, 5))), x)
    # Bilinear upsampling with half-pixel centres: 2x2 -> 4x4 keeps the corners' neighbours.
    small = np.arange(4, dtype="float32").reshape(1, 2, 2, 1)
    up = np.asarray(multi_teacher.resize_features(small, (4, 4)))[0, :, :, 0]
    np.testing.assert_allclose(up[0], [0.0, 0.25, 0.75, 1.0])
    np.testing.assert_allclose(up[:, 0], [0.0, 0.5, 1.5, 2.0])


def test_majority_vote_breaks_ties_by_teacher_order():
    eye = np.eye(4)
    # Example 0: votes 2, 2, 1 -> 2.  Example 1: 3, 1, 1 -> 1.  Example 2: all differ -> teacher 0.
    predictions = [[2, 3, 0], [2, 1, 1], [1, 1, 3]]
    logits = np.stack([eye[p] for p in predictions])
    np.testing.assert_array_equal(multi_teacher.majority_vote(logits), [2, 1, 0])
    # 2-2 tie between classes 1 and 0 among 4 teachers: the class teacher 0 voted for wins.
    tie = np.stack([eye[[0]], eye[[1]], eye[[1]], eye[[0]]])
    assert multi_teacher.majority_vote(tie)[0] == 0


def test_official_factors():
    assert multi_teacher.official_factors("ca_mkd", "ca_mkd", 3) == (
        pytest.approx(1 / 3),
        pytest.approx(1 / 3),
    )
    assert multi_teacher.official_factors("ebkd", "aver", 4) == (0.75, 1.0)
    assert multi_teacher.official_factors("aver", "aver", 3) == (1.0, 1.0)


# ---- the distiller on tiny models ----------------------------------------------------------------
def _conv_model(widths, seed, classes=4, batchnorm=True, name=None):
    """A small conv net with the zoo's layer names: ... "features" -> "pooled" -> "classifier"."""
    init = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input((8, 8, 1))
    x = inputs
    for index, width in enumerate(widths):
        last = index == len(widths) - 1
        x = keras.layers.Conv2D(width, 3, padding="same", kernel_initializer=init)(x)
        if batchnorm:
            x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU(name="features" if last else None)(x)
        if not last:
            x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D(name="pooled")(x)
    outputs = keras.layers.Dense(classes, kernel_initializer=init, name="classifier")(x)
    return keras.Model(inputs, outputs, name=name)


def _images(n=64, seed=0, classes=4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(size=(n, 8, 8, 1)).astype("float32") * 0.5
    x[np.arange(n), 2 * (y // 2), 2 * (y % 2)] += 3.0  # a class-dependent bright pixel
    return x, y.astype("int32")


def _teachers(seed=10):
    # Different depths, spatial sizes (8, 4, 2) and channel counts.
    return [
        _conv_model((6,), seed, name="t0"),
        _conv_model((4, 8), seed + 1, name="t1"),
        _conv_model((4, 4, 5), seed + 2, name="t2"),
    ]


def _reference_loss(distiller, x, y):
    """CA-MKD Eq. 9 in NumPy, from the pieces' own forward passes (inference mode)."""
    features, student = (np.asarray(a) for a in distiller.student_view(x, training=False))
    views = [[np.asarray(a) for a in v(x, training=False)] for v in distiller.teacher_views]
    logits = np.stack([v[1] for v in views])
    count = len(views)
    weights = _reference_weights(logits, y, "ca_mkd")
    kd = sum(weights[:, k] * _kl(logits[k], student, 4.0) for k in range(count))
    mapped = [np.asarray(a(features, training=False)) for a in distiller.adapters]
    errors = np.stack(
        [((views[k][0] - mapped[k]) ** 2).reshape(len(y), -1).mean(1) for k in range(count)], 1
    )
    head_losses = np.stack(
        [_ce(y, np.asarray(h(m, training=False))) for h, m in zip(distiller.teacher_heads, mapped)]
    )
    feature_weights = ((1 - _softmax(head_losses, axis=0)) / (count - 1)).T
    inter = np.sum(feature_weights * errors, 1)
    return _ce(y, student), kd, inter, weights, feature_weights


def test_ca_mkd_evaluate_matches_reference_with_different_teacher_shapes():
    x, y = _images()
    distiller = tfkd.MultiTeacherDistiller(
        _conv_model((4, 6), 1), _teachers(), lambda1=0.7, lambda2=3.0
    )
    distiller.compile(optimizer="sgd", metrics=["accuracy"])
    result = distiller.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    ce, kd, inter, weights, feature_weights = _reference_loss(distiller, x, y)
    assert result["loss"] == pytest.approx(np.mean(ce + 0.7 * kd + 3.0 * inter), rel=1e-4)
    assert result["distillation_loss"] == pytest.approx(kd.mean(), rel=1e-4)
    assert result["feature_loss"] == pytest.approx(inter.mean(), rel=1e-4)
    for k in range(3):
        assert result[f"teacher_{k}_weight"] == pytest.approx(weights[:, k].mean(), rel=1e-4)
        assert result[f"teacher_{k}_feature_weight"] == pytest.approx(
            feature_weights[:, k].mean(), rel=1e-4
        )


def _code_formula(distiller, x, y, method):
    """The authors' helper/loops.py + distiller_zoo/CAMKD.py, transcribed literally in NumPy."""
    bsz, teacher_num = len(y), 3
    student = np.asarray(distiller.student(x, training=False))
    logit_t_list = [np.asarray(t(x, training=False)) for t in distiller.teachers]
    loss_div = np.stack([_kl(t, student, 4.0) for t in logit_t_list])  # [K, B]
    if method == "ca_mkd":
        features = np.asarray(distiller.student_view(x, training=False)[0])
        feature_weights = _reference_loss(distiller, x, y)[-1]
        loss_t = np.stack([_ce(y, t) for t in logit_t_list])
        attention = (1.0 - _softmax(loss_t, axis=0)) / (teacher_num - 1)
        loss_div = np.sum(attention * loss_div) / (1.0 * bsz * teacher_num)
        loss_kd = np.sum(
            feature_weights.T
            * np.stack(
                [
                    ((distiller.teacher_views[k](x)[0] - distiller.adapters[k](features)) ** 2)
                    .numpy()
                    .reshape(bsz, -1)
                    .mean(-1)
                    for k in range(3)
                ]
            )
        ) / (1.0 * bsz * teacher_num)
        return loss_div, loss_kd
    probs = [_softmax(t) for t in logit_t_list]
    entropy_list = [(-p * np.log(p)).sum(1) for p in probs]
    entropy_sum = np.stack(entropy_list).sum(0)
    weight = np.stack([1.0 - e / entropy_sum for e in entropy_list])
    return np.sum(weight * loss_div) / (1.0 * bsz * teacher_num), 0.0


@pytest.mark.parametrize("method", ["ca_mkd", "ebkd"])
def test_official_scaling_equals_the_authors_formula(method):
    x, y = _images(n=16)
    distiller = tfkd.MultiTeacherDistiller(
        _conv_model((4, 6), 1), _teachers(), weighting=method, official_scaling=True
    )
    distiller.compile(optimizer="sgd")
    result = distiller.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    loss_div, loss_kd = _code_formula(distiller, x, y, method)
    assert result["distillation_loss"] == pytest.approx(loss_div, rel=1e-4)
    lambda2 = 50.0 if method == "ca_mkd" else 0.0
    expected = np.mean(_ce(y, np.asarray(distiller.student(x)))) + loss_div + lambda2 * loss_kd
    assert result["loss"] == pytest.approx(expected, rel=1e-4)
    plain = tfkd.MultiTeacherDistiller(distiller.student, distiller.teachers, weighting=method)
    plain.compile(optimizer="sgd")
    unscaled = plain.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    factor = 1 / 3 if method == "ca_mkd" else 2 / 3
    assert result["distillation_loss"] == pytest.approx(
        factor * unscaled["distillation_loss"], rel=1e-4
    )


def test_lambda2_zero_is_the_logits_only_loss():
    x, y = _images(n=32)
    student, teachers = _conv_model((4, 6), 1), _teachers()
    distiller = tfkd.MultiTeacherDistiller(student, teachers, lambda2=0.0)
    assert not distiller.uses_features and "feature_loss" not in distiller.loss_terms
    assert len(distiller.trainable_variables) == len(student.trainable_variables)
    distiller.compile(optimizer="sgd")
    result = distiller.evaluate(x, y, batch_size=32, return_dict=True, verbose=0)
    logits = np.stack([np.asarray(t(x, training=False)) for t in teachers])
    z = np.asarray(student(x, training=False))
    weights = _reference_weights(logits, y, "ca_mkd")
    kd = sum(weights[:, k] * _kl(logits[k], z, 4.0) for k in range(3))
    assert result["loss"] == pytest.approx(np.mean(_ce(y, z) + kd), rel=1e-4)


def test_fit_trains_student_and_adapters_only():
    x, y = _images(n=96)
    teachers = _teachers()
    rng = np.random.default_rng(5)
    for teacher in teachers:  # move every weight, BatchNorm statistics included, off its start
        teacher.set_weights([w + rng.uniform(0.0, 0.2, w.shape) for w in teacher.get_weights()])
    before = [[w.copy() for w in t.get_weights()] for t in teachers]
    distiller = tfkd.MultiTeacherDistiller(_conv_model((4, 6), 1), teachers, lambda2=5.0)
    teacher_ids = {id(v) for t in teachers for v in t.variables}
    assert not teacher_ids & {id(v) for v in distiller.trainable_variables}
    adapter_ids = {id(v) for a in distiller.adapters for v in a.trainable_variables}
    assert adapter_ids <= {id(v) for v in distiller.trainable_variables}

    distiller.epoch.assign(1)  # past the first epoch, so that the feature term counts
    with tf.GradientTape() as tape:
        loss, _ = distiller._forward((x[:32], y[:32]), training=True)()
    every = distiller.trainable_variables + [v for t in teachers for v in t.variables]
    gradients = dict(zip(map(id, every), tape.gradient(loss, every)))
    for adapter in distiller.adapters:
        kernel = adapter.get_layer("conv").kernel
        assert float(tf.reduce_max(tf.abs(gradients[id(kernel)]))) > 0
    assert all(gradients[i] is None for i in teacher_ids)
    # With the authors' un-detached w', the teachers' heads carry w''s gradient back to the
    # adapters; they are still not among the variables the optimizer updates.
    distiller.feature_weight_gradient = True
    with tf.GradientTape() as tape:
        loss, _ = distiller._forward((x[:32], y[:32]), training=True)()
    heads = [v for h in distiller.teacher_heads for v in h.weights]
    assert any(g is not None for g in tape.gradient(loss, heads))
    distiller.feature_weight_gradient = False
    distiller.epoch.assign(0)

    adapters_before = [a.get_layer("conv").kernel.numpy().copy() for a in distiller.adapters]
    distiller.compile(optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"])
    history = distiller.fit(x, y, batch_size=32, epochs=3, verbose=0)
    for teacher, weights in zip(teachers, before):
        for a, b in zip(weights, teacher.get_weights()):  # includes BatchNorm moving statistics
            np.testing.assert_array_equal(a, b)
    for adapter, kernel in zip(distiller.adapters, adapters_before):
        assert np.abs(adapter.get_layer("conv").kernel.numpy() - kernel).max() > 1e-4
    h = history.history
    assert h["loss"][-1] < h["loss"][1]
    for k in range(3):
        assert 0.0 < h[f"teacher_{k}_weight"][-1] < 0.5  # CA-MKD weights lie in [0, 1/(K-1)]
    total = sum(h[f"teacher_{k}_weight"][-1] for k in range(3))
    assert total == pytest.approx(1.0, rel=1e-5)


def test_feature_term_is_left_out_during_the_first_epoch_only():
    x, y = _images(n=32)
    distiller = tfkd.MultiTeacherDistiller(_conv_model((4, 6), 1), _teachers(), lambda2=5.0)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    kernels = [a.get_layer("conv").kernel.numpy().copy() for a in distiller.adapters]
    history = distiller.fit(x, y, batch_size=32, epochs=1, verbose=0)
    for adapter, kernel in zip(distiller.adapters, kernels):
        np.testing.assert_array_equal(adapter.get_layer("conv").kernel.numpy(), kernel)
    h = history.history
    assert h["loss"][0] == pytest.approx(h["student_loss"][0] + h["distillation_loss"][0], rel=1e-5)
    distiller.fit(x, y, batch_size=32, epochs=2, initial_epoch=1, verbose=0)
    assert int(distiller.epoch.numpy()) == 1
    assert any(
        np.abs(a.get_layer("conv").kernel.numpy() - k).max() > 1e-5
        for a, k in zip(distiller.adapters, kernels)
    )


def _one_step(strategy, x, y, teacher_weights, student_weights):
    keras.utils.set_random_seed(5)  # the same adapter initialisation in both runs
    with strategy.scope():
        teachers = _teachers()
        for teacher, weights in zip(teachers, teacher_weights):
            teacher.set_weights(weights)
        student = _conv_model((4, 6), 1, batchnorm=False)  # per-replica BatchNorm would differ
        student.set_weights(student_weights)
        distiller = tfkd.MultiTeacherDistiller(
            student, teachers, lambda2=5.0, skip_features_first_epoch=False
        )
        distiller.compile(optimizer=keras.optimizers.SGD(0.5), metrics=["accuracy"])
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(len(x))
    history = distiller.fit(dataset, epochs=1, verbose=0)
    adapters = [w for a in distiller.adapters for w in a.get_weights()]
    return student.get_weights() + adapters, history.history


def test_two_replicas_take_the_same_step_as_one(mirrored):
    x, y = _images(n=32)
    teacher_weights = [t.get_weights() for t in _teachers(seed=20)]
    student_weights = _conv_model((4, 6), 2, batchnorm=False).get_weights()
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    assert len(devices) == 2
    one, h1 = _one_step(
        tf.distribute.OneDeviceStrategy(devices[0]), x, y, teacher_weights, student_weights
    )
    two, h2 = _one_step(mirrored, x, y, teacher_weights, student_weights)
    moved = max(np.abs(a - b).max() for a, b in zip(one, student_weights))
    assert moved > 1e-3
    for a, b in zip(one, two):  # student, adapter kernels and adapter BatchNorm statistics
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    for name in (
        "loss",
        "student_loss",
        "distillation_loss",
        "feature_loss",
        "teacher_0_weight",
        "teacher_2_feature_weight",
        "accuracy",
    ):
        assert h2[name][0] == pytest.approx(h1[name][0], rel=1e-5)


def test_vector_models_use_dense_adapters():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(16, 6)).astype("float32")
    y = rng.integers(0, 3, 16)
    student = tfkd.models.build("mlp_small", (6,), 3, seed=1)
    teachers = [tfkd.models.build(n, (6,), 3, seed=s) for s, n in ((2, "mlp"), (3, "mlp_small"))]
    distiller = tfkd.MultiTeacherDistiller(student, teachers, lambda2=1.0)
    assert [a.output_shape for a in distiller.adapters] == [(None, 256), (None, 64)]
    distiller.compile(optimizer="sgd")
    assert np.isfinite(distiller.evaluate(x, y, verbose=0, return_dict=True)["feature_loss"])


def test_clear_errors():
    student, teachers = _conv_model((4, 6), 1), _teachers()
    with pytest.raises(ValueError, match="at least 2 teachers; got 1"):
        tfkd.MultiTeacherDistiller(student, teachers[:1], weighting="ca_mkd")
    with pytest.raises(
        ValueError,
        match=r"teacher 1 disagree on the number of classes.*"
        r"\(None, 4\).*\(None, 5\)",
    ):
        tfkd.MultiTeacherDistiller(student, [teachers[0], _conv_model((4,), 3, classes=5)])
    with pytest.raises(ValueError, match="feature_layer: the student .* no layer named 'block9'"):
        tfkd.MultiTeacherDistiller(student, teachers, feature_layer="block9")
    with pytest.raises(ValueError, match="non-empty list"):
        tfkd.MultiTeacherDistiller(student, teachers[0])
    with pytest.raises(ValueError, match="feature_weighting must be one of"):
        tfkd.MultiTeacherDistiller(student, teachers, feature_weighting="median")
    vector_features = tfkd.models.build("mlp_small", (64,), 4).get_layer("features").output
    with pytest.raises(ValueError, match="both be feature maps"):
        tfkd.distillers.features.build_adapter(
            student.get_layer("features").output.shape[1:], vector_features.shape[1:], "adapter_0"
        )
    # One teacher is fine for label-free average weights without features.
    tfkd.MultiTeacherDistiller(student, teachers[:1], weighting="aver")


@pytest.mark.parametrize(
    "method,extra,expected",
    [
        ("aver", {}, ("aver", "aver", 0.0)),
        ("ebkd", {"official_scaling": True}, ("ebkd", "aver", 0.0)),
        ("fitnet_mkd", {}, ("aver", "aver", 100.0)),
        ("ca_mkd", {}, ("ca_mkd", "ca_mkd", 50.0)),
        ("ca_mkd", {"ca_mkd_ablation": "average_weights"}, ("aver", "aver", 50.0)),
        ("ca_mkd", {"ca_mkd_ablation": "no_features"}, ("ca_mkd", "ca_mkd", 0.0)),
        ("ca_mkd", {"ca_mkd_ablation": "logit_weights_for_features"}, ("ca_mkd", "logits", 50.0)),
        ("fixed_mkd", {"fixed_teacher_weights": "1,1,2"}, ("fixed", "aver", 0.0)),
    ],
)
def test_registered_methods_build_the_paper_settings(method, extra, expected):
    entry = tfkd.methods.METHODS.get(method)
    assert entry.multi_teacher and entry.needs_teacher
    options = {option.name: option.default for option in entry.options}
    options.update(extra)
    distiller = entry.build(_conv_model((4, 6), 1), _teachers(), None, options)
    assert (distiller.weighting, distiller.feature_weighting, distiller.lambda2) == expected
    assert distiller.temperature == 4.0 and distiller.lambda1 == 1.0
    assert distiller.official_scaling == extra.get("official_scaling", False)
    if method == "fixed_mkd":
        assert distiller.fixed_weights == [0.25, 0.25, 0.5]


def test_a_registered_weighting_carries_its_teacher_count_and_official_factor():
    def sharpest(teacher_logits, labels=None):
        """All weight on the teacher with the largest top-1 probability, per example."""
        top = ops.max(ops.softmax(teacher_logits, axis=-1), axis=-1)  # [K, B]
        return ops.one_hot(ops.argmax(top, axis=0), teacher_logits.shape[0])  # [B, K]

    entry = multi_teacher.Weighting(sharpest, min_teachers=3, official_factor=lambda count: 0.5)
    with multi_teacher.WEIGHTINGS.temporary("sharpest", entry):
        logits = np.array([[[4.0, 0.0]], [[1.0, 0.0]], [[0.0, 9.0]]], "float32")  # K=3, B=1
        np.testing.assert_allclose(
            multi_teacher.teacher_weights(logits, [0], "sharpest"), [[0.0, 0.0, 1.0]]
        )
        with pytest.raises(ValueError, match="'sharpest' needs at least 3 teachers; got 2"):
            multi_teacher.teacher_weights(logits[:2], [0], "sharpest")
        assert multi_teacher.official_factors("sharpest", "aver", 3) == (0.5, 1.0)
