"""The contract every registered method keeps, checked for each name in `METHODS.names()` (a new
method is covered without editing this file; tests/test_replicas.py checks 2 replicas = 1):

  * its declarations are consistent (options with defaults in their declared ranges, a teacher
    count, a search space over its own options, a weighting for multi-teacher methods);
  * `tfkd.methods.build` builds it from the defaults and refuses an unknown option by name;
  * a few steps in eager and in graph mode leave the teachers' weights unchanged and report
    only finite terms;
  * its flagfile `configs/methods/<name>.flags` parses into a RunConfig that passes the run's
    checks and builds.
"""

import os

import keras
import numpy as np
import pytest

from tfkd import data, experiment, models
from tfkd import methods as registry
from tfkd.experiment import job
from tfkd.methods import METHODS

FEATURES, CLASSES, EXAMPLES = 6, 4, 16
FLAGFILES = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "methods"
)
# Options a method cannot take at its defaults on two tiny teachers.
OVERRIDES = {"fixed_teacher_weights": "1,3", "skip_features_first_epoch": False}


def _bundle():
    rng = np.random.default_rng(0)
    splits = [
        (
            rng.normal(size=(EXAMPLES, FEATURES)).astype("float32"),
            rng.integers(0, CLASSES, EXAMPLES).astype(np.int64),
        )
        for _ in range(3)
    ]
    return data.DataBundle(
        name="tiny",
        train=splits[0],
        validation=splits[1],
        test=splits[2],
        num_classes=CLASSES,
        input_shape=(FEATURES,),
        superclass_of=np.array([0, 0, 1, 1]),
    )


def _models(method, teacher_count=2):
    student = models.build("mlp_small", (FEATURES,), CLASSES, seed=0)
    teachers = [
        models.build("mlp", (FEATURES,), CLASSES, seed=1 + k)
        for k in range(teacher_count if method.multi_teacher else 1)
    ]
    if not method.needs_teacher:
        return student, None, teachers
    return student, (teachers if method.multi_teacher else teachers[0]), teachers


def _given(method):
    return {
        name: value
        for name, value in OVERRIDES.items()
        if name in {option.name for option in method.options}
    }


@pytest.mark.parametrize("name", METHODS.names())
def test_declarations_are_consistent(name):
    method = METHODS.get(name)
    names = [option.name for option in method.options]
    assert len(names) == len(set(names))
    for option in method.options:
        option.check(option.default if option.name not in OVERRIDES else OVERRIDES[option.name])
        assert option.help
    assert set(method.search_space) <= set(names)
    assert method.min_teachers >= (1 if method.needs_teacher else 0)
    assert (method.weighting is not None) == method.multi_teacher
    if method.multi_teacher:
        weighting, _ = method.weighting(method.resolve(_given(method)))
        from tfkd import teacher_weighting as multi_teacher

        assert weighting in multi_teacher.WEIGHTINGS


@pytest.mark.parametrize("name", METHODS.names())
@pytest.mark.parametrize("run_eagerly", [True, False], ids=["eager", "graph"])
def test_a_few_steps_train_the_student_only_with_finite_terms(name, run_eagerly):
    method = METHODS.get(name)
    student, teacher, teachers = _models(method)
    distiller = registry.build(name, student, teacher, _bundle(), **_given(method))
    distiller.compile(optimizer=keras.optimizers.SGD(0.01), run_eagerly=run_eagerly)
    before = [weights for model in teachers for weights in model.get_weights()]
    student_before = student.get_weights()
    history = distiller.fit(
        data.as_dataset(*_bundle().train, batch_size=8), epochs=2, verbose=0
    ).history
    assert {"loss", "student_loss"} <= set(history)
    for term, values in history.items():
        assert np.all(np.isfinite(values)), (term, values)
    after = [weights for model in teachers for weights in model.get_weights()]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert not all(np.array_equal(a, b) for a, b in zip(student_before, student.get_weights()))
    logs = distiller.evaluate(
        data.as_dataset(*_bundle().test, batch_size=8), return_dict=True, verbose=0
    )
    assert all(np.isfinite(value) for value in logs.values()), logs


@pytest.mark.parametrize("name", METHODS.names())
def test_unknown_option_is_refused_by_name(name):
    method = METHODS.get(name)
    student, teacher, _ = _models(method)
    with pytest.raises(ValueError, match=f"method '{name}' has no option temprature"):
        registry.build(name, student, teacher, _bundle(), temprature=2.0)


@pytest.mark.parametrize("name", METHODS.names())
def test_flagfile_parses_checks_and_builds(name):
    path = os.path.join(FLAGFILES, f"{name}.flags")
    assert os.path.isfile(path), f"{name} has no flagfile {path}"
    config = experiment.RunConfig.from_flags([f"--flagfile={path}"])
    assert config.method.name == name
    method = job.check(config)
    count = len(config.teacher.specs)
    assert not method.multi_teacher or count >= method.min_teachers
    student, teacher, _ = _models(method, teacher_count=count)
    distiller = registry.build(name, student, teacher, _bundle(), **config.method.options)
    assert isinstance(distiller, keras.Model)
    assert config.to_flags() and experiment.RunConfig.from_flags(config.to_flags()) == config


def test_a_miss_names_the_registering_module(tmp_path, monkeypatch):
    """A name registered by a module of the registry's package that nobody imported yet: the
    miss finds and names that module (no table of names)."""
    from tfkd.registry import Registry

    with pytest.raises(ValueError, match="'nope' is not registered; known: "):
        METHODS.get("nope")
    package = tmp_path / "late_methods"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "holder.py").write_text("")
    (package / "extra.py").write_text(
        "from late_methods import holder\nholder.REGISTRY.register('late', 42)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import late_methods.holder as holder

    holder.REGISTRY = Registry("method", package="late_methods")
    with pytest.raises(
        ValueError,
        match="'late' is not registered; it is registered by "
        "late_methods.extra, which was not imported",
    ):
        holder.REGISTRY.get("late")
    assert holder.REGISTRY.get("late") == 42
    with pytest.raises(ValueError, match="'other' is not registered; known: late$"):
        holder.REGISTRY.get("other")


@pytest.mark.parametrize("name", METHODS.names())
def test_declared_features_decide_whether_a_logits_cache_is_refused(name):
    """The config reads needs_features when it is made: a single-teacher method that reads the
    teacher's features refuses a logits-only source (a memory cache, fixed teaching) before any
    work; multi-teacher caches carry the features; a method without a teacher refuses a cache."""
    method = METHODS.get(name)
    path = os.path.join(FLAGFILES, f"{name}.flags")
    if not method.needs_teacher:
        with pytest.raises(ValueError, match=f"--teacher_cache: method '{name}' uses no teacher"):
            experiment.RunConfig.from_flags([f"--flagfile={path}", "--teacher_cache=memory"])
        return
    # Teaching modes are single-teacher (a multi-teacher method refuses them for that reason).
    extras = ["--teacher_cache=memory"] + ([] if method.multi_teacher else ["--teaching=fixed"])
    for extra in extras:
        if method.needs_features and not method.multi_teacher:
            with pytest.raises(
                ValueError, match=f"but --method={name} reads the teacher's intermediate features"
            ):
                experiment.RunConfig.from_flags([f"--flagfile={path}", extra])
        else:
            job.check(experiment.RunConfig.from_flags([f"--flagfile={path}", extra]))
