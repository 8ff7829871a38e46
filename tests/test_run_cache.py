"""--teacher_cache, --teacher_precision through `tfkd.experiment.run`: cached and online
distillation agree exactly, disk entries are keyed and reused, half-written ones rebuilt, fixed
teaching is the cache, replay runs end to end and a killed cached run resumes exactly."""

import json
import os
import re

import keras
import numpy as np
import pytest
from cluster import run_one

from tfkd import experiment
from tfkd.data import pipeline
from tfkd.experiment import RunConfig
from tfkd.teacher import serving

TINY = [
    "--dataset=synthetic",
    "--synthetic_size=600",
    "--synthetic_dim=12",
    "--synthetic_classes=4",
    "--synthetic_superclasses=2",
    "--student=mlp_small",
    "--epochs=1",
    "--batch_size=64",
    "--optimizer=adam",
    "--learning_rate=0.01",
    "--verbose=0",
    "--export=keras",
    "--deterministic",
]


def run(args, out):
    return experiment.run(RunConfig.from_flags([*args, f"--output_dir={out}"]))


def weights(folder):
    return keras.saving.load_model(os.path.join(folder, "student.keras")).get_weights()


def assert_same_student(first, second):
    for a, b in zip(weights(first), weights(second), strict=True):
        np.testing.assert_array_equal(a, b)
    assert (first / "history.csv").read_text() == (second / "history.csv").read_text()


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """Two trained mlp teachers (.keras files), so runs load rather than train them."""
    root = tmp_path_factory.mktemp("teachers")
    found = {}
    for name, arch in (("a", "mlp"), ("b", "mlp_small")):
        run([*TINY, f"--teacher={arch}", "--teacher_epochs=2", "--method=kd"], root / name)
        found[name] = str(root / name / "teacher.keras")
    return found


def test_cached_and_online_kd_give_identical_students_and_losses(teachers, tmp_path):
    cache_dir = tmp_path / "cache"
    common = [*TINY, f"--teacher={teachers['a']}", f"--cache_dir={cache_dir}"]
    online = run([*common, "--teacher_cache=none"], tmp_path / "none")
    assert online["teacher_cache"] == {"mode": "none"}
    assert online["teacher_serving"]["precision"] == "float32"
    for mode in ("memory", "disk"):
        cached = run([*common, f"--teacher_cache={mode}"], tmp_path / mode)
        assert_same_student(tmp_path / "none", tmp_path / mode)
        assert cached["student"] == online["student"]
        record = cached["teacher_cache"]
        assert record["mode"] == mode and record["built"] is True and len(record["key"]) == 32
        assert (record["path"] is None) == (mode == "memory")
    # The training and validation entries; memory leaves none.
    assert sorted(os.listdir(cache_dir)) == sorted(
        os.path.basename(record[name]) for name in ("path", "validation_path")
    )


def test_multi_teacher_cache_equals_online_and_carries_features(teachers, tmp_path):
    common = [
        *TINY,
        "--method=aver",
        f"--teachers={teachers['a']},{teachers['b']}",
        f"--cache_dir={tmp_path / 'cache'}",
    ]
    online = run([*common, "--teacher_cache=none"], tmp_path / "none")
    cached = run([*common, "--teacher_cache=memory"], tmp_path / "memory")
    assert_same_student(tmp_path / "none", tmp_path / "memory")
    assert cached["student"] == online["student"]
    # ca_mkd reads the teachers' feature maps as well: cached (float16, tolerance-checked).
    features = run([*common, "--method=ca_mkd", "--teacher_cache=disk"], tmp_path / "ca_mkd")
    assert features["teacher_cache"]["outputs"] == ["logits", "features"]
    history = (tmp_path / "ca_mkd" / "history.csv").read_text().splitlines()
    header, last = history[0].split(","), history[-1].split(",")
    assert np.isfinite(float(last[header.index("feature_loss")]))


def test_disk_cache_is_reused_only_for_the_same_teacher_subset_and_seed(teachers, tmp_path):
    common = [*TINY, "--teacher_cache=disk", f"--cache_dir={tmp_path / 'cache'}"]
    first = run([*common, f"--teacher={teachers['a']}"], tmp_path / "first")["teacher_cache"]
    again = run([*common, f"--teacher={teachers['a']}"], tmp_path / "again")["teacher_cache"]
    assert first["built"] and not again["built"]
    assert (again["key"], again["path"]) == (first["key"], first["path"])
    assert_same_student(tmp_path / "first", tmp_path / "again")
    keys = {first["key"]}
    for name, extra in (
        ("teacher", [f"--teacher={teachers['b']}"]),
        ("subset", [f"--teacher={teachers['a']}", "--train_limit=300"]),
        ("seed", [f"--teacher={teachers['a']}", "--seed=1"]),
    ):
        other = run([*common, *extra], tmp_path / name)["teacher_cache"]
        assert other["built"], name
        keys.add(other["key"])
    assert len(keys) == 4


def test_a_half_written_cache_entry_is_rebuilt(teachers, tmp_path):
    common = [
        *TINY,
        f"--teacher={teachers['a']}",
        "--teacher_cache=disk",
        f"--cache_dir={tmp_path / 'cache'}",
    ]
    first = run(common, tmp_path / "first")["teacher_cache"]
    entry = first["path"]
    os.remove(os.path.join(entry, "manifest.json"))  # the manifest is written last
    logits = os.path.join(entry, "teacher_0_logits.npy")
    with open(logits, "r+b") as handle:
        handle.truncate(os.path.getsize(logits) // 2)
    rebuilt = run(common, tmp_path / "rebuilt")["teacher_cache"]
    assert rebuilt["built"] and rebuilt["key"] == first["key"]
    assert os.path.isfile(os.path.join(entry, "manifest.json"))
    assert_same_student(tmp_path / "first", tmp_path / "rebuilt")


def test_fixed_teaching_is_the_memory_cache_and_shares_the_disk_entry(teachers, tmp_path):
    common = [*TINY, f"--teacher={teachers['a']}", f"--cache_dir={tmp_path / 'cache'}"]
    fixed = run([*common, "--teaching=fixed"], tmp_path / "fixed")
    memory = run([*common, "--teaching=fixed", "--teacher_cache=memory"], tmp_path / "memory")
    assert fixed["teacher_cache"]["mode"] == memory["teacher_cache"]["mode"] == "memory"
    assert fixed["teacher_cache"]["key"] == memory["teacher_cache"]["key"]
    assert_same_student(tmp_path / "fixed", tmp_path / "memory")
    # One mechanism: the entry a plain disk-cached run wrote is what fixed teaching reads.
    plain = run([*common, "--teacher_cache=disk"], tmp_path / "plain")["teacher_cache"]
    shared = run([*common, "--teaching=fixed", "--teacher_cache=disk"], tmp_path / "shared")
    assert plain["key"] == fixed["teacher_cache"]["key"]
    assert (
        shared["teacher_cache"]["built"] is False
        and shared["teacher_cache"]["path"] == plain["path"]
    )
    assert_same_student(tmp_path / "fixed", tmp_path / "shared")


@pytest.mark.parametrize(
    "args,fragments",
    [
        (
            ["--teacher_cache=memory", "--augment"],
            ["--teacher_cache=memory", "--augment", "--teacher_cache=replay"],
        ),
        (
            ["--teacher_cache=disk", "--teaching=consistent"],
            ["--teaching=consistent", "--teacher_cache=replay"],
        ),
        (["--teacher_cache=replay"], ["--teaching=consistent or function_matching"]),
        (["--teacher_cache=replay", "--teaching=fixed"], ["--teaching=fixed"]),
        (["--teacher_cache=memory", "--method=ls"], ["uses no teacher"]),
    ],
)
def test_a_cache_that_cannot_hold_is_refused_with_one_line(teachers, tmp_path, args, fragments):
    with pytest.raises(ValueError, match=re.escape(fragments[0])) as caught:
        run([*TINY, f"--teacher={teachers['a']}", *args], tmp_path / "run")
    message = str(caught.value)
    assert "\n" not in message and all(f in message for f in fragments), message
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def _npz(root, n_train=240, n_test=60, classes=3):
    rng = np.random.default_rng(0)
    root.mkdir()
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, classes, n)
        base = (labels * 100)[:, None, None, None]
        x = np.clip(base + rng.normal(0, 20, (n, 8, 8, 1)), 0, 255).astype(np.uint8)
        np.savez(root / f"{split}.npz", x=x, y=labels)
    return f"npz:{root}"


def test_replay_runs_end_to_end_and_is_reused(tmp_path):
    images = _npz(tmp_path / "images")
    common = [
        f"--dataset={images}",
        "--teacher=cnn_small",
        "--teacher_epochs=1",
        "--student=cnn_small",
        "--epochs=2",
        "--batch_size=32",
        "--verbose=0",
        "--export=keras",
        "--deterministic",
        "--teacher_cache=replay",
        "--replay_views=2",
        "--replay_topk=2",
        f"--cache_dir={tmp_path / 'cache'}",
    ]
    for mode in ("consistent", "function_matching"):
        first = run([*common, f"--teaching={mode}"], tmp_path / mode)
        record = first["teacher_cache"]
        assert record["mode"] == "replay" and record["built"] and record["views"] == 2
        assert os.path.isfile(record["path"]) and 0 <= first["student"]["accuracy"] <= 1
    # A second run with the same (trained-alike, deterministic) teacher reads the entry.
    again = run([*common, "--teaching=consistent"], tmp_path / "again")["teacher_cache"]
    assert again["built"] is False
    assert_same_student(tmp_path / "consistent", tmp_path / "again")
    assert len([name for name in os.listdir(tmp_path / "cache") if name.endswith(".npz")]) == 2


def test_bfloat16_teacher_is_checked_and_a_failed_check_stops_the_run(tmp_path, monkeypatch):
    images = _npz(tmp_path / "images")
    common = [
        f"--dataset={images}",
        "--teacher=cnn_small",
        "--teacher_epochs=1",
        "--student=cnn_small",
        "--epochs=1",
        "--batch_size=32",
        "--verbose=0",
        "--export=keras",
        "--deterministic",
        "--teacher_precision=bfloat16",
    ]
    served = run(common, tmp_path / "bf16")["teacher_serving"]
    assert served["precision"] == "bfloat16" and served["batch_norms_folded"] == 2
    assert 0 < served["soft_target_difference"] <= serving.TOLERANCES["bfloat16"]
    monkeypatch.setitem(serving.TOLERANCES, "bfloat16", 1e-9)
    with pytest.raises(
        ValueError, match=r"^--teacher_precision=bfloat16:.*exceeds the tolerance"
    ) as caught:
        run(common, tmp_path / "strict")
    message = str(caught.value)
    assert (
        message.startswith("--teacher_precision=bfloat16:")
        and "exceeds the tolerance" in message
        and "\n" not in message
    )
    assert not (tmp_path / "strict").exists()


def test_memory_mapped_extras_equal_in_memory_ones(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 3)).astype(np.float32), rng.integers(0, 4, 50)
    logits = rng.normal(size=(50, 4)).astype(np.float32)
    np.save(tmp_path / "logits.npy", logits)
    mapped = np.load(tmp_path / "logits.npy", mmap_mode="r")
    orders = pipeline.shuffled_orders(50, 2, seed=3)
    batches = {}
    for name, value in (("memory", logits), ("mapped", mapped)):
        dataset, steps = pipeline.epochs_dataset(
            x, y, orders, 16, extras={"teacher_logits": value, "pair": (value, value)}
        )
        batches[name] = list(dataset.take(2 * steps).as_numpy_iterator())
    for (xa, ya), (xb, yb) in zip(batches["memory"], batches["mapped"], strict=True):
        np.testing.assert_array_equal(xa, xb)
        for key in ("labels", "teacher_logits"):
            np.testing.assert_array_equal(ya[key], yb[key])
        np.testing.assert_array_equal(yb["pair"][1], yb["teacher_logits"])
    first = batches["mapped"][0][1]
    np.testing.assert_array_equal(first["teacher_logits"], logits[orders[0][:16]])


def test_a_killed_cached_run_resumes_and_equals_an_uninterrupted_one(teachers, tmp_path):
    args = [*TINY, f"--teacher={teachers['a']}", "--epochs=3", "--teacher_cache=memory"]
    # SIGKILL after step 2 of the third epoch (two epochs checkpointed).
    killed = run_one([*args, "--output_dir=run"], tmp_path, check=False, TFKD_FAULT="distill:3:2")
    assert killed.returncode == -9 and not (tmp_path / "run").exists(), killed.stderr[-3000:]
    resumed = run_one([*args, "--output_dir=run"], tmp_path)
    assert "Resuming distill at epoch 3 of 3" in resumed.stdout
    out = tmp_path / "run"
    results = json.loads((out / "results.json").read_text())
    record = results["teacher_cache"]
    assert results["resumed"] and record["built"] and record["reused_on_resume"]
    reference = run(args, tmp_path / "reference")
    assert reference["teacher_cache"]["key"] == record["key"]
    assert_same_student(out, tmp_path / "reference")
    assert results["student"] == reference["student"]


def test_validation_batches_carry_the_cached_outputs_and_the_teacher_does_not_run(tmp_path):
    """The validation pass of a cached run reads the carried logits: logits that are not the
    teacher's give exactly the KD loss NumPy computes from them."""
    import types

    import tfkd
    from tfkd.experiment import fitting
    from tfkd.teacher import batch_format

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    carried = rng.normal(scale=3.0, size=(40, 3)).astype(np.float32)  # not the teacher's

    def model(seed):
        keras.utils.set_random_seed(seed)
        return keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])

    student, teacher = model(1), model(2)
    distiller = tfkd.Distiller(student, teacher, temperature=4.0, alpha=1.0)
    distiller.compile(optimizer="sgd")
    bundle = types.SimpleNamespace(validation=(x, y))
    dataset = fitting.validation_dataset(bundle, 16, {batch_format.TEACHER_LOGITS: carried})
    logs = distiller.evaluate(dataset, verbose=0, return_dict=True)

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    p_t, p_s = softmax(carried / 4.0), softmax(student.predict(x, verbose=0) / 4.0)
    want = 16.0 * np.mean(np.sum(p_t * (np.log(p_t) - np.log(p_s)), axis=1))
    np.testing.assert_allclose(logs["distillation_loss"], want, rtol=1e-5)
