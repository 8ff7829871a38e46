"""Writes docs/lm/summary.json and docs/lm/table.md from the run records in docs/lm/runs/.

Runs: `fkl2` (teacher gpt_small trained 8 epochs, forward-KL student, student alone),
`online` and `store32` (the same teacher trained 14 epochs in all, loaded; the student distilled
from the live teacher and from a store of its top-32 log-probabilities). The student alone is
`fkl2`'s baseline: same student, data, seed and schedule.
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def load(name):
    with open(os.path.join(HERE, "runs", name, "results.json")) as f:
        return json.load(f)


def main():
    first, online, store = load("fkl2"), load("online"), load("store32")
    alone = first["baseline"]["test"]["perplexity"]
    rows = {
        "teacher_8_epochs": first["teacher"]["test"]["perplexity"],
        "student_forward_kl_teacher_8_epochs": first["student"]["test"]["perplexity"],
        "teacher_14_epochs": online["teacher"]["test"]["perplexity"],
        "student_forward_kl_online": online["student"]["test"]["perplexity"],
        "student_topk32_store": store["student"]["test"]["perplexity"],
        "student_alone": alone,
    }
    online_gain = alone - rows["student_forward_kl_online"]
    store_gain = alone - rows["student_topk32_store"]
    summary = {
        "script": "python docs/lm/summarize.py",
        "test_perplexity": rows,
        "teacher_14_epochs_below_student_alone": alone - rows["teacher_14_epochs"],
        "online_gain_over_student_alone": online_gain,
        "store_gain_over_student_alone": store_gain,
        "store_share_of_online_gain": store_gain / online_gain,
        "store_bytes_per_token": store["store"]["bytes_per_token"],
        "store_size_bytes": store["store"]["size_bytes"],
        "student_cpu_seconds": {
            "online": online["cpu_seconds"]["student"],
            "store": store["cpu_seconds"]["student"],
            "alone": first["cpu_seconds"]["baseline"],
        },
        "store_tokens_per_cpu_second_vs_alone": (
            first["cpu_seconds"]["baseline"] / store["cpu_seconds"]["student"]
        ),
        "final_distillation_loss_store": store["student"]["history"]["distillation_loss"][-1],
        "tokens": first["data"],
    }
    with open(os.path.join(HERE, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    lines = ["| model | test perplexity |", "|---|---|"]
    lines += [f"| {name.replace('_', ' ')} | {value:.2f} |" for name, value in rows.items()]
    with open(os.path.join(HERE, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
