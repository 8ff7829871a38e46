"""Distillation of causal language models: token-level divergences (`tfkd.losses`), on-policy
(GKD) batches, stored top-k teacher log-probabilities, and the run `tfkd distill` routes
language-model data to.

    from tfkd import lm
    distiller = lm.CausalLMDistiller(student, teacher, divergence="reverse_kl")
    # the whole job, as `tfkd distill --config=lm` runs it:
    results = tfkd.experiment.run(RunConfig.from_flags(["--flagfile=tfkd/configs/lm.flags"]))
"""

from tfkd.lm.distiller import CausalLMDistiller, check_vocabularies
from tfkd.lm.objective import masked_global_mean
from tfkd.lm.sampling import Sampling, sample_completions
from tfkd.lm.store import TopKStore

__all__ = [
    "CausalLMDistiller",
    "Sampling",
    "TopKStore",
    "check_vocabularies",
    "masked_global_mean",
    "sample_completions",
]
