"""`bin/bench lm` (tfkd.lm.throughput) on tiny models for 2 steps: the report's structure, its
token counts against the data's padding masks, and its ratios against its own timings."""

import json
import statistics

import keras
import numpy as np
import pytest

from tfkd.lm import throughput


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm_bench")
    config = throughput.LMBenchConfig(
        teacher="gpt_tiny",
        student="gpt_tiny",
        sequence_length=12,
        batch_size=4,
        steps=2,
        repetitions=1,
        cache_topk=8,
        max_new_tokens=4,
        store_dir=str(folder / "store"),
        output=str(folder / "lm.json"),
    )
    keras.utils.set_random_seed(0)
    returned = throughput.run(config)
    with open(config.output) as handle:
        written = json.load(handle)
    return config, returned, written


def test_report_is_written_with_every_variant_and_the_goal(report):
    config, returned, written = report
    assert written == json.loads(json.dumps(returned))
    assert set(written["variants"]) == set(throughput.VARIANTS)
    for entry in written["variants"].values():
        assert len(entry["cpu_seconds"]) == len(entry["wall_seconds"]) == config.repetitions
        assert entry["input_pipeline_cpu_seconds"] >= 0
    goal = written["goals"]["stored_topk_vs_student_alone"]
    assert goal["at_least"] == 0.90
    assert goal["met"] == (goal["measured"] >= 0.90)
    assert written["store"]["k"] == 8
    assert written["store"]["bytes_per_token"] == 8 * 4 + 8 * 2 + 4  # int32 ids, float16, tail
    assert written["config"]["steps"] == 2


def test_tokens_are_the_valid_target_tokens_of_the_batches(report):
    config, _, written = report
    split = throughput.synthetic_split(config)
    assert split.token_ids.shape == ((config.steps + 1) * config.batch_size, 13)
    # Targets are tokens 1..L of each row; a target counts where the padding mask is 1.
    expected = int(split.padding_mask[:, 1:].sum())
    assert expected < split.padding_mask[:, 1:].size  # some rows are padded
    for entry in written["variants"].values():
        assert entry["tokens_per_repetition"] == expected
        rates = [expected / cpu for cpu in entry["cpu_seconds"]]
        assert entry["tokens_per_cpu_second"] == pytest.approx(statistics.median(rates))
    alone = written["variants"]["student_alone"]["cpu_seconds"]
    stored = written["variants"]["stored_topk"]["cpu_seconds"]
    ratio = statistics.median(a / s for a, s in zip(alone, stored))
    assert written["cpu_time_ratio_to_student_alone"]["stored_topk/student_alone"] == (
        pytest.approx(ratio)
    )


def test_generation_counts_every_sampled_token(report):
    config, _, written = report
    generation = written["generation"]
    # No end token is given, so each row samples max_new_tokens after its prompt.
    assert generation["tokens"] == config.batch_size * config.max_new_tokens
    assert generation["prompt_length"] + config.max_new_tokens <= config.sequence_length + 1
    assert generation["tokens_per_cpu_second"] > 0


def test_bad_flags_name_the_flag(tmp_path):
    with pytest.raises(ValueError, match="--max_new_tokens must be at most half"):
        throughput.LMBenchConfig(max_new_tokens=40, sequence_length=64).check()
    with pytest.raises(ValueError, match="--student must be one of"):
        throughput.LMBenchConfig(student="resnet20").check()
    with pytest.raises(ValueError, match="--cache_topk 300 exceeds the vocabulary size 259"):
        throughput.main(["--cache_topk=300"])
    with pytest.raises(ValueError, match="unknown flag --stepz"):
        throughput.main(["--stepz=3"])


def test_synthetic_rows_pad_after_their_length():
    config = throughput.LMBenchConfig(sequence_length=8, batch_size=3, steps=1)
    split = throughput.synthetic_split(config)
    lengths = split.padding_mask.sum(axis=1)
    # The mask is a prefix of ones; padded positions hold the pad id, real ones byte tokens.
    np.testing.assert_array_equal(
        split.padding_mask, (np.arange(9)[None, :] < lengths[:, None]).astype("int32")
    )
    assert np.all(split.token_ids[split.padding_mask == 0] == 0)
    assert np.all(split.token_ids[split.padding_mask == 1] >= 3)
