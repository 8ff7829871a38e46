"""`LanguageModelConfig`: the settings of a run on language-model data (`RunConfig.lm`).

A run whose `--dataset` is `lm:FILE_OR_DIR` or `stdlib` distils a causal LM per token
(`tfkd.lm.run`); these fields are its own flags. What it shares with every run is read from the
run's other fields: `--teacher`, `--student`, `--teacher_epochs`, `--epochs`, `--batch_size`,
`--optimizer`, `--learning_rate`, `--sequence_length`, `--validation_fraction`, `--seed`,
`--teacher_cache` (none or disk) with `--cache_dir`, `--baseline`, `--output_dir`, and kd's
`--divergence`, `--jsd_beta`, `--temperature` and `--alpha`.
"""

import dataclasses

from tfkd.data.language_modeling import SPLIT_BY
from tfkd.settings import REPORT, TEACHER, check, setting

GROUP = "language models"


@dataclasses.dataclass(frozen=True)
class LanguageModelConfig:
    """Corpus, sampling and store settings of a causal-LM run."""

    corpus_bytes: int = setting(
        120_000,
        group=GROUP,
        role=TEACHER,
        minimum=1,
        help="--dataset=stdlib: bytes of the standard library's docstrings taken (a sample "
        "seeded by --data_seed).",
    )
    split_by: str = setting(
        "document",
        group=GROUP,
        role=TEACHER,
        choices=SPLIT_BY,
        help="Language-model text: split train/validation/test by document (paragraph) or by "
        "block of --sequence_length + 1 tokens.",
    )
    test_fraction: float = setting(
        0.1,
        group=GROUP,
        role=TEACHER,
        minimum=0,
        maximum=1,
        open_minimum=True,
        open_maximum=True,
        help="Language-model text: share of the documents (or blocks) in the test split; "
        "--validation_fraction is the validation split's.",
    )
    data_seed: int = setting(
        -1,
        group=GROUP,
        role=TEACHER,
        minimum=-1,
        help="Language-model text: seed of the corpus sample and the split (-1: --seed), so "
        "that runs of several seeds share their data.",
    )
    prompt_column: str = setting(
        "",
        group=GROUP,
        role=TEACHER,
        help="--dataset=lm:FILE.jsonl: the field holding the prompt (default prompt); prompt "
        "tokens are left out of the loss.",
    )
    completion_column: str = setting(
        "",
        group=GROUP,
        role=TEACHER,
        help="--dataset=lm:FILE.jsonl: the field holding the completion (default completion).",
    )
    dropout: float = setting(
        0.0,
        group=GROUP,
        role=TEACHER,
        minimum=0,
        maximum=1,
        open_maximum=True,
        help="Dropout rate of the causal LMs built here by name (gpt_tiny, gpt_small).",
    )
    cache_topk: int = setting(
        32,
        group=GROUP,
        minimum=1,
        help="--teacher_cache=disk: the teacher's top-k next-token log-probabilities stored per "
        "token (6k + 4 bytes), at most the vocabulary size.",
    )
    on_policy_fraction: float = setting(
        0.0,
        group=GROUP,
        minimum=0,
        maximum=1,
        help="Probability that a training batch is scored on the student's own samples "
        "(on-policy distillation, GKD's lambda); 0 is plain distillation.",
    )
    max_new_tokens: int = setting(
        16,
        group=GROUP,
        minimum=0,
        help="Tokens the student samples after each prompt (on-policy batches and the "
        "completions of --samples).",
    )
    sampling_temperature: float = setting(
        1.0,
        group=GROUP,
        minimum=0,
        open_minimum=True,
        help="Temperature of the student's sampling.",
    )
    sampling_top_k: int = setting(
        0, group=GROUP, minimum=0, help="Sample from the k most likely tokens only (0: all)."
    )
    sampling_top_p: float = setting(
        1.0,
        group=GROUP,
        minimum=0,
        maximum=1,
        open_minimum=True,
        help="Nucleus sampling: the smallest set of tokens holding this mass (1: all).",
    )
    samples: int = setting(
        3,
        group=GROUP,
        role=REPORT,
        minimum=0,
        help="Completions of test prompts the student samples into results.json.",
    )

    def __post_init__(self):
        check(self)
