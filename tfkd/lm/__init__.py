"""Distillation of causal language models: token-level divergences, on-policy (GKD) batches,
stored top-k teacher log-probabilities, and an end-to-end run.

    from tfkd import lm
    distiller = lm.CausalLMDistiller(student, teacher, divergence="reverse_kl")
    results = lm.run(lm.LMRunConfig(output_dir="/tmp/lm"))  # data, teacher, student, report
"""

from tfkd.lm.distiller import CausalLMDistiller, check_vocabularies
from tfkd.lm.objective import (
    DIVERGENCE_NAMES,
    forward_kl,
    generalized_jsd,
    masked_global_mean,
    reverse_kl,
    sparse_topk_kl,
)
from tfkd.lm.run import LMRunConfig, run
from tfkd.lm.sampling import sample_completions
from tfkd.lm.store import TopKStore

__all__ = [
    "CausalLMDistiller",
    "DIVERGENCE_NAMES",
    "LMRunConfig",
    "TopKStore",
    "check_vocabularies",
    "forward_kl",
    "generalized_jsd",
    "masked_global_mean",
    "reverse_kl",
    "run",
    "sample_completions",
    "sparse_topk_kl",
]
