"""Stored teacher top-k for sequences: equal to the online top-k, k = V is full forward KL,
keyed, rebuilt when half-written, refused above the vocabulary size."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from tiny_lms import TIME, VOCABULARY, softmax, tiny_lm

from tfkd.data.language_modeling import TokenSplit
from tfkd.lm import CausalLMDistiller
from tfkd.lm.store import TopKStore, bytes_per_token


def _split(rows=6, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(3, VOCABULARY, (rows, TIME + 1)).astype("int32")
    padding = np.ones_like(tokens)
    padding[-1, 5:] = 0
    tokens[-1, 5:] = 0
    return TokenSplit(tokens, padding, padding.copy())


def test_stored_topk_equals_the_online_topk(tmp_path):
    teacher, split = tiny_lm(1), _split()
    store = TopKStore.open_or_build(str(tmp_path), teacher, split, k=5, batch_size=4)
    x, _, _ = split.shifted()
    log_p = np.log(softmax(np.asarray(teacher(x))))
    ids = np.argsort(-log_p, axis=-1, kind="stable")[..., :5]
    np.testing.assert_array_equal(store.arrays["teacher_topk_ids"], ids)
    top = np.take_along_axis(log_p, ids, -1)
    np.testing.assert_allclose(
        store.arrays["teacher_topk_log_probs"].astype("float32"), top, rtol=1e-3, atol=1e-3
    )
    np.testing.assert_allclose(
        store.arrays["teacher_tail_mass"], 1 - np.exp(top).sum(-1), atol=1e-5
    )
    assert store.arrays["teacher_topk_ids"].dtype == np.int32
    assert store.arrays["teacher_topk_log_probs"].dtype == np.float16
    assert store.bytes_per_token == bytes_per_token(5) == 5 * 4 + 5 * 2 + 4
    assert store.built and store.record["sequences"] == 6


def test_distillation_from_all_v_stored_tokens_is_full_forward_kl(tmp_path):
    teacher, split = tiny_lm(1), _split()
    store = TopKStore.open_or_build(str(tmp_path), teacher, split, k=VOCABULARY)
    x, y, weight = split.shifted()
    logs = []
    for source in ("store", "teacher"):
        distiller = CausalLMDistiller(tiny_lm(2), None if source == "store" else teacher, alpha=0.7)
        distiller.compile(optimizer=keras.optimizers.SGD(0.1))
        if source == "store":
            logs.append(
                distiller.evaluate(store.dataset(split, batch_size=6), verbose=0, return_dict=True)
            )
        else:
            logs.append(
                distiller.evaluate(
                    x, y, sample_weight=weight, batch_size=6, verbose=0, return_dict=True
                )
            )
    for name in ("loss", "distillation_loss", "student_loss"):
        assert logs[0][name] == pytest.approx(logs[1][name], rel=2e-3)


def test_store_is_keyed_and_a_half_written_store_is_rebuilt(tmp_path):
    teacher, split = tiny_lm(1), _split()
    first = TopKStore.open_or_build(str(tmp_path), teacher, split, k=3)
    again = TopKStore.open_or_build(str(tmp_path), teacher, split, k=3)
    assert not again.built and again.directory == first.directory
    other_k = TopKStore.open_or_build(str(tmp_path), teacher, split, k=4)
    other_data = TopKStore.open_or_build(str(tmp_path), teacher, _split(seed=1), k=3)
    other_teacher = TopKStore.open_or_build(str(tmp_path), tiny_lm(3), split, k=3)
    assert (
        len({first.directory, other_k.directory, other_data.directory, other_teacher.directory})
        == 4
    )
    expected = np.array(first.arrays["teacher_topk_ids"])
    # An interrupted write: the record missing, an array cut short.
    os.remove(os.path.join(first.directory, "store.json"))
    with open(os.path.join(first.directory, "teacher_topk_ids.npy"), "r+b") as handle:
        handle.truncate(200)
    rebuilt = TopKStore.open_or_build(str(tmp_path), teacher, split, k=3)
    assert rebuilt.built and rebuilt.directory == first.directory
    np.testing.assert_array_equal(rebuilt.arrays["teacher_topk_ids"], expected)
    assert sorted(os.listdir(tmp_path)) == sorted(
        os.path.basename(store.directory) for store in (first, other_k, other_data, other_teacher)
    )


def test_k_above_the_vocabulary_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--cache_topk 25 exceeds the vocabulary size 24"):
        TopKStore.open_or_build(str(tmp_path), tiny_lm(1), _split(), k=VOCABULARY + 1)
    with pytest.raises(ValueError, match="--cache_topk must be a positive integer"):
        TopKStore.open_or_build(str(tmp_path), tiny_lm(1), _split(), k=0)


def test_training_from_the_store_runs_without_a_teacher(tmp_path):
    teacher, split = tiny_lm(1), _split()
    store = TopKStore.open_or_build(str(tmp_path), teacher, split, k=4)
    student = tiny_lm(2)
    distiller = CausalLMDistiller(student, None, alpha=1.0)
    distiller.compile(optimizer=keras.optimizers.Adam(0.01))
    history = distiller.fit(
        store.dataset(split, batch_size=3, shuffle=True, seed=0), epochs=3, shuffle=False, verbose=0
    ).history
    assert history["distillation_loss"][-1] < history["distillation_loss"][0]


def test_a_store_killed_while_written_is_rebuilt_whole(tmp_path):
    """SIGKILL after the store's second batch (TFKD_FAULT, in a subprocess) leaves no store,
    only a hidden temporary; the next build writes the whole store, equal to an uninterrupted
    one."""
    script = (
        "import sys; sys.path.insert(0, 'tests'); "
        "from test_lm_store import _split; from tiny_lms import tiny_lm; "
        "from tfkd.lm.store import TopKStore; "
        "TopKStore.open_or_build(sys.argv[1], tiny_lm(1), _split(), k=3, batch_size=2)"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    killed = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "killed")],
        env={**os.environ, "TFKD_FAULT": "store:1:2", "TF_CPP_MIN_LOG_LEVEL": "3"},
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    left = os.listdir(tmp_path / "killed")
    assert left and all(name.startswith(".lm_topk_") for name in left)
    rebuilt = TopKStore.open_or_build(str(tmp_path / "killed"), tiny_lm(1), _split(), k=3)
    whole = TopKStore.open_or_build(str(tmp_path / "whole"), tiny_lm(1), _split(), k=3)
    assert rebuilt.built and rebuilt.record == whole.record
    for name, array in whole.arrays.items():
        np.testing.assert_array_equal(rebuilt.arrays[name], array)
