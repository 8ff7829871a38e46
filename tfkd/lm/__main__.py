"""`python -m tfkd.lm [flags]`: `tfkd distill --config=lm [flags]`, the causal-LM recipe
(tfkd/configs/lm.flags) under the flags given.

Kept for command lines written before causal LMs ran through `tfkd distill`, with their
meaning: the same flag names (`--top_k` and `--top_p` are `--sampling_top_k` and
`--sampling_top_p`), an existing `--output_dir` replaced (`--overwrite`), and a `store` folder in
it, when there is one, holding the top-k stores (`--cache_dir`).
"""

import os
import sys

RENAMED = {"--top_k": "--sampling_top_k", "--top_p": "--sampling_top_p"}


def renamed(argument):
    name, separator, value = argument.partition("=")
    return RENAMED.get(name, name) + separator + value


def distill_args(argv):
    """The `tfkd distill` arguments of a `python -m tfkd.lm` command line."""
    args = ["--config=lm", *(renamed(argument) for argument in argv), "--overwrite"]
    output_dirs = [a.split("=", 1)[1] for a in argv if a.startswith("--output_dir=")]
    if output_dirs and os.path.isdir(os.path.join(output_dirs[-1], "store")):
        args.append(f"--cache_dir={os.path.join(output_dirs[-1], 'store')}")
    return args


if __name__ == "__main__":
    arguments = [sys.executable, "-m", "tfkd", "distill", *distill_args(sys.argv[1:])]
    sys.stdout.flush()
    os.execv(sys.executable, arguments)
