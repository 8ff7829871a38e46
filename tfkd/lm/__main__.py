"""`python -m tfkd.lm --flagfile=docs/lm/stdlib_gpt.flags --output_dir=DIR`: one run."""

import json
import sys

from tfkd.lm.run import LMRunConfig, run


def main(argv):
    try:
        config = LMRunConfig.from_flags(argv)
        config.check()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    results = run(config)
    summary = {
        role: results[role]["perplexity"]
        for role in ("teacher", "student", "baseline")
        if role in results
    }
    print(json.dumps({"test_perplexity": summary, "cpu_seconds": results["cpu_seconds"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
