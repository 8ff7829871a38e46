"""--method=ls|kd_pt|kd_sim|kd_pt_sim|kd_topk|kd_rel: losses against NumPy, errors, replicas."""

import json
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from partial_reference import (
    ref_kd_pt,
    ref_kd_rel,
    ref_kd_sim,
    ref_kd_topk,
    ref_kl_distance,
    ref_label_smoothing,
    softmax,
)

from tfkd import models
from tfkd.data.superclass import read_superclass_map
from tfkd.methods import METHODS, all_options
from tfkd.models.introspection import classifier_weights
from tfkd.teacher import loading

K, D = 6, 5
SUPERCLASS_OF = np.array([0, 0, 1, 1, 2, 2])


def _options(method, **overrides):
    defaults = {option.name: option.default for option in METHODS.get(method).options}
    return {**defaults, **overrides}


def _bundle(superclass_of=SUPERCLASS_OF, class_names=None):
    return types.SimpleNamespace(name="toy", superclass_of=superclass_of, class_names=class_names)


def _models(seed=0):
    teacher = models.build("mlp", (D,), K, seed=seed + 1)
    student = models.build("mlp_small", (D,), K, seed=seed + 2)
    return student, teacher


def _toy(n=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype("float32")
    return x, rng.integers(0, K, size=n).astype("int32")


def _reference_target(method, options, teacher, teacher_logits, labels):
    probs = softmax(teacher_logits / options.get("temperature", 1.0))
    weights = teacher.get_layer("classifier").kernel.numpy().T
    sim = lambda: ref_kd_sim(weights, labels, options["sim_beta"], options["sim_temperature"])
    return {
        "ls": lambda: ref_label_smoothing(labels, K, options.get("epsilon")),
        "kd_pt": lambda: ref_kd_pt(probs, labels),
        "kd_sim": sim,
        "kd_pt_sim": lambda: (
            options["gamma"] * ref_kd_pt(probs, labels) + (1 - options["gamma"]) * sim()
        ),
        "kd_topk": lambda: ref_kd_topk(probs, options.get("topk")),
        "kd_rel": lambda: ref_kd_rel(
            labels, SUPERCLASS_OF, options["p_gt"], options["p_same"], options["p_other"]
        ),
    }[method]()


OVERRIDES = {
    "ls": {"epsilon": 0.2},
    "kd_pt": {"temperature": 2.0, "alpha": 0.7},
    "kd_sim": {"temperature": 3.0, "sim_beta": 2.0, "sim_temperature": 0.2},
    "kd_pt_sim": {"gamma": 0.3, "sim_temperature": 0.3},
    "kd_topk": {"topk": 2, "temperature": 2.0},
    "kd_rel": {"p_same": 0.1},
}


@pytest.mark.parametrize("method", sorted(OVERRIDES))
def test_loss_terms_match_numpy(method):
    student, teacher = _models()
    options = _options(method, **OVERRIDES[method])
    entry = METHODS.get(method)
    distiller = entry.build(student, teacher if entry.needs_teacher else None, _bundle(), options)
    x, y = _toy()
    teacher_logits = teacher(x).numpy()
    student_logits = student(x).numpy()
    distiller_teacher_logits = distiller.teacher_logits(x)
    # KD-sim, KD-rel and LS never run the teacher: their targets do not depend on the input.
    assert (distiller_teacher_logits is None) == (method in ("ls", "kd_sim", "kd_rel"))
    terms = distiller.compute_terms(x, y, student_logits, distiller_teacher_logits, False)
    target = _reference_target(method, options, teacher, teacher_logits, y)
    ce = -np.log(softmax(student_logits)[np.arange(len(y)), y])
    if method == "ls":
        expected_distill = -np.sum(target * np.log(softmax(student_logits)), axis=-1)
        expected_loss = expected_distill
    else:
        expected_distill = ref_kl_distance(target, student_logits, options["temperature"])
        expected_loss = (1 - options["alpha"]) * ce + options["alpha"] * expected_distill
    np.testing.assert_allclose(terms["distillation_loss"], expected_distill, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(terms["loss"], expected_loss, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(terms["student_loss"], ce, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", sorted(OVERRIDES))
def test_every_method_trains_with_fit(method):
    student, teacher = _models()
    entry = METHODS.get(method)
    distiller = entry.build(student, teacher, _bundle(), _options(method))
    distiller.compile(optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"])
    x, y = _toy(n=64)
    before = [w.copy() for w in student.get_weights()]
    history = distiller.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert max(np.abs(a - b).max() for a, b in zip(before, student.get_weights())) > 1e-4


def _terms(method, teacher):
    student, _ = _models()
    distiller = METHODS.get(method).build(student, teacher, _bundle(), _options(method))
    x, y = _toy()
    return distiller.compute_terms(x, y, student(x).numpy(), distiller.teacher_logits(x), False)


def test_ls_and_kd_rel_need_no_teacher_and_the_others_do():
    # Two teachers with different weights: a method that uses its teacher gives other losses.
    first, second = _models(seed=0)[1], _models(seed=5)[1]
    for method in ("ls", "kd_rel"):
        alone = _terms(method, None)
        for teacher in (first, second):
            np.testing.assert_array_equal(_terms(method, teacher)["loss"], alone["loss"])
    for method in ("kd_pt", "kd_sim", "kd_pt_sim", "kd_topk"):
        difference = np.abs(_terms(method, first)["loss"] - _terms(method, second)["loss"])
        assert difference.max() > 1e-3, method


# (default, type, minimum, maximum, open minimum) of each option two or more of these methods
# declare, written out from the papers' settings rather than read from the declarations.
SHARED = {
    "temperature": (4.0, float, 0, None, True),
    "alpha": (0.9, float, 0, 1, False),
    "sim_beta": (1.0, float, None, None, False),
    "sim_temperature": (0.1, float, None, None, False),
    "classifier_layer": ("classifier", str, None, None, False),
}


def test_options_are_flags_that_agree_across_methods():
    flags = all_options()
    for method in OVERRIDES:
        for option in METHODS.get(method).options:
            if option.name in SHARED:
                declared = (
                    option.default,
                    type(option.default),
                    option.minimum,
                    option.maximum,
                    option.open_minimum,
                )
                assert declared == SHARED[option.name], (method, option.name)
                flag = flags[option.name]
                assert (
                    type(flag.default),
                    flag.minimum,
                    flag.maximum,
                    flag.open_minimum,
                ) == SHARED[option.name][1:], option.name


@pytest.mark.parametrize("method", ["kd_pt", "kd_sim", "kd_pt_sim", "kd_topk", "kd_rel"])
@pytest.mark.parametrize(
    "option,value,message",
    [("temperature", 0.0, "temperature must be > 0"), ("alpha", 1.5, r"alpha must be in \[0, 1\]")],
)
def test_every_method_refuses_the_same_out_of_range_values(method, option, value, message):
    student, teacher = _models()
    with pytest.raises(ValueError, match=message):
        METHODS.get(method).build(student, teacher, _bundle(), _options(method, **{option: value}))


def test_kd_sim_reads_the_named_layer_even_inside_a_wrapped_teacher():
    student, teacher = _models()
    wrapped = loading.rescale_inputs(teacher, 255.0)
    expected = teacher.get_layer("classifier").kernel.numpy().T
    np.testing.assert_array_equal(classifier_weights(wrapped, "classifier"), expected)
    hidden = classifier_weights(teacher, "hidden0")
    assert hidden.shape == (256, D)
    with pytest.raises(ValueError, match="--classifier_layer.*has 256 outputs"):
        METHODS.get("kd_sim").build(
            student, teacher, _bundle(), _options("kd_sim", classifier_layer="hidden0")
        )


@pytest.mark.parametrize("method", ["kd_sim", "kd_pt_sim"])
def test_missing_classifier_layer_is_refused(method):
    student, teacher = _models()
    with pytest.raises(ValueError, match="--classifier_layer: the teacher has no layer 'logits'"):
        METHODS.get(method).build(
            student, teacher, _bundle(), _options(method, classifier_layer="logits")
        )
    with pytest.raises(ValueError, match="--classifier_layer: layer 'pooled'.*no 2-D kernel"):
        METHODS.get(method).build(
            student, teacher, _bundle(), _options(method, classifier_layer="pooled")
        )


@pytest.mark.parametrize("topk", [0, K + 1])
def test_topk_flag_outside_range_is_refused(topk):
    student, teacher = _models()
    with pytest.raises(ValueError, match=rf"--topk must be in \[1, {K}\]"):
        METHODS.get("kd_topk").build(student, teacher, _bundle(), _options("kd_topk", topk=topk))


def test_kd_rel_without_a_superclass_map_is_refused():
    student, _ = _models()
    with pytest.raises(ValueError, match="needs a super-class map.*--superclass_map"):
        METHODS.get("kd_rel").build(student, None, _bundle(superclass_of=None), _options("kd_rel"))


def test_superclass_map_files(tmp_path):
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([2, 2, 0, 0, 1, 1]))
    np.testing.assert_array_equal(read_superclass_map(str(listed), K), [2, 2, 0, 0, 1, 1])
    names = [f"c{i}" for i in range(K)]
    grouped = tmp_path / "groups.json"
    grouped.write_text(json.dumps({"a": ["c0", 1], "b": [2, "c3"], "c": [4, 5]}))
    np.testing.assert_array_equal(read_superclass_map(str(grouped), K, names), [0, 0, 1, 1, 2, 2])
    # a file given on the command line wins over the data set's own map
    student, teacher = _models()
    options = _options("kd_rel", superclass_map=str(listed))
    distiller = METHODS.get("kd_rel").build(student, None, _bundle(), options)
    x, y = _toy()
    np.testing.assert_allclose(
        distiller.target(None, y),
        ref_kd_rel(y, [2, 2, 0, 0, 1, 1], options["p_gt"], options["p_same"], options["p_other"]),
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    "content, message",
    [
        ("[0, 1]", "must hold a list of 6 integers"),
        ('{"a": [0, 1, 2], "b": [3, 4]}', r"gives no super-class to classes \[5\]"),
        ('{"a": [0, 1, 2], "b": [2, 3, 4, 5]}', "class 2 is listed twice"),
        ('{"a": [0, 1, 2], "b": ["dog", 3, 4, 5]}', "'dog' is not a class index"),
        ("{not json", "is not valid JSON"),
    ],
)
def test_bad_superclass_map_files_are_refused(tmp_path, content, message):
    path = tmp_path / "map.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=f"--superclass_map: .*{message}"):
        read_superclass_map(str(path), K)
    with pytest.raises(ValueError, match="--superclass_map: .* does not exist"):
        read_superclass_map(str(tmp_path / "missing.json"), K)


def _one_step(strategy, method, x, y, teacher_weights, student_weights):
    with strategy.scope():
        student, teacher = _models()
        teacher.set_weights(teacher_weights)
        student.set_weights(student_weights)
        distiller = METHODS.get(method).build(student, teacher, _bundle(), _options(method))
        distiller.compile(optimizer=keras.optimizers.SGD(0.5), metrics=["accuracy"])
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(len(x))
    history = distiller.fit(dataset, epochs=1, verbose=0, shuffle=False)
    return student.get_weights(), history.history


@pytest.mark.parametrize("method", ["kd_pt_sim", "ls"])
def test_two_replicas_take_the_same_step_as_one(method, mirrored):
    x, y = _toy(n=32)
    student, teacher = _models()
    student_weights, teacher_weights = student.get_weights(), teacher.get_weights()
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    one, h1 = _one_step(
        tf.distribute.OneDeviceStrategy(devices[0]), method, x, y, teacher_weights, student_weights
    )
    two, h2 = _one_step(mirrored, method, x, y, teacher_weights, student_weights)
    assert max(np.abs(a - b).max() for a, b in zip(one, student_weights)) > 1e-3
    for a, b in zip(one, two):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    for name in ("loss", "student_loss", "distillation_loss"):
        assert h2[name][0] == pytest.approx(h1[name][0], rel=1e-5)
