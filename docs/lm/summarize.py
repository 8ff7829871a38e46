"""Writes docs/lm/summary.json and docs/lm/table.md from the run records in docs/lm/runs/.

The comparison (docs/lm/compare.sh): runs `<name>-seed<N>/` of one gpt_small teacher (loaded
from its .keras file) and a gpt_tiny student per method and seed; the student alone is the
baseline of the `fkl` runs (same student, data, seed and schedule, cross-entropy only). Means
and sample standard deviations (ddof 1) over the seeds present; gains are the student alone's
mean validation perplexity minus the method's, with the standard deviation of the per-seed
paired differences. Partial results (fewer seeds) are summarised as they are, seeds listed.

The first run (`fkl2`, `online`, `store32`: one seed, teachers of 8 and 14 epochs) is kept under
"first_run", and the store-speed benchmark (docs/benchmarks/lm_throughput.json) under "bench".
"""

import csv
import json
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
RUNS = os.path.join(HERE, "runs")
# row name -> (run name, role in its results.json)
ROWS = {
    "student_alone": ("fkl", "baseline"),
    "forward_kl": ("fkl", "student"),
    "reverse_kl": ("rkl", "student"),
    "jsd_0.5": ("jsd", "student"),
    "on_policy_jsd_0.5_lambda_0.5": ("onpolicy", "student"),
    "stored_top8": ("k8", "student"),
    "stored_top32": ("k32", "student"),
    "stored_top259_all": ("kV", "student"),
    "multi_teacher_aver": ("aver", "student"),
}
# The same student trained 3 epochs (compare.sh with SUFFIX=_e3 EPOCHS=3): the store goal's rows.
ROWS_3_EPOCHS = {
    "student_alone": ("fkl_e3", "baseline"),
    "forward_kl": ("fkl_e3", "student"),
    "stored_top32": ("k32_e3", "student"),
}
GOAL_SHARE, GOAL_BYTES = 0.95, 200


def load(name):
    with open(os.path.join(RUNS, name, "results.json")) as f:
        return json.load(f)


def spread(values):
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "values": values,
    }


def runs_of(run):
    """{seed: results} of the comparison's run `run`."""
    found = {}
    for entry in sorted(os.listdir(RUNS)):
        name, _, seed = entry.rpartition("-seed")
        if name == run and os.path.isfile(os.path.join(RUNS, entry, "results.json")):
            found[int(seed)] = load(entry)
    return found


def row_summary(run, role):
    results = runs_of(run)
    if not results:
        return None
    seeds = sorted(results)
    phase = "baseline" if role == "baseline" else "student"
    row = {
        "run": run,
        "seeds": seeds,
        "validation_perplexity": spread(
            [results[s][role]["validation"]["perplexity"] for s in seeds]
        ),
        "validation_nll": spread([results[s][role]["validation"]["nll"] for s in seeds]),
        "test_perplexity": spread([results[s][role]["test"]["perplexity"] for s in seeds]),
        "cpu_seconds": spread([results[s]["cpu_seconds"][phase] for s in seeds]),
    }
    teachers = results[seeds[0]].get("teachers")
    if teachers:  # several teachers: each one's validation perplexity
        row["teachers_validation_perplexity"] = {
            entry.get("arch", str(index)): entry["validation"]["perplexity"]
            for index, entry in enumerate(teachers)
        }
    store = results[seeds[0]].get("store")
    if store and role == "student":
        row["store"] = {
            "k": store["k"],
            "bytes_per_token": store["bytes_per_token"],
            "size_bytes": store["size_bytes"],
            "build_cpu_seconds": next(
                results[s]["cpu_seconds"]["store"]
                for s in seeds
                if not results[s]["store"]["reused"]
            )
            if any(not results[s]["store"]["reused"] for s in seeds)
            else None,
        }
    return row, results


def comparison(specs=ROWS, first="fkl"):
    """Rows of `specs` ({row: (run, role)}), gains over the student alone of the run `first`."""
    rows, per_seed = {}, {}
    for name, (run, role) in specs.items():
        found = row_summary(run, role)
        if found:
            rows[name], results = found
            per_seed[name] = {s: r[role]["validation"]["perplexity"] for s, r in results.items()}
    if "student_alone" not in rows:
        return {"rows": rows}
    alone = per_seed["student_alone"]
    for name, row in rows.items():
        paired = [alone[s] - per_seed[name][s] for s in sorted(per_seed[name]) if s in alone]
        row["gain_over_student_alone"] = spread(paired) if paired else None
    any_run = load(next(e for e in sorted(os.listdir(RUNS)) if e.startswith(f"{first}-seed")))
    summary = {
        "rows": rows,
        "teacher": {
            "validation_perplexity": any_run["teacher"]["validation"]["perplexity"],
            "test_perplexity": any_run["teacher"]["test"]["perplexity"],
            "parameters": any_run["teacher"]["parameters"],
            "below_student_alone_validation": (
                rows["student_alone"]["validation_perplexity"]["mean"]
                - any_run["teacher"]["validation"]["perplexity"]
            ),
        },
        "student_parameters": any_run["student"]["parameters"],
        "sizes": {**any_run["data"], **sizes(any_run.get("flags") or any_run["config"])},
    }
    summary["teacher"]["above_student_alone_validation"] = -summary["teacher"][
        "below_student_alone_validation"
    ]
    summary["teacher"].update(teacher_training())
    if "forward_kl" in rows and "stored_top32" in rows:
        full = rows["forward_kl"]["gain_over_student_alone"]["mean"]
        bytes_per_token = rows["stored_top32"]["store"]["bytes_per_token"]
        # A share of forward KL's gain is only defined when forward KL gains something.
        shares = {
            f"{name}_share_of_forward_kl_gain": (
                rows[name]["gain_over_student_alone"]["mean"] / full if full > 0 else None
            )
            for name in ("stored_top8", "stored_top32", "stored_top259_all")
            if name in rows
        }
        share = shares["stored_top32_share_of_forward_kl_gain"]
        summary["store_goal"] = {
            **shares,
            "forward_kl_gain": full,
            "at_least": GOAL_SHARE,
            "top32_bytes_per_token": bytes_per_token,
            "at_most_bytes": GOAL_BYTES,
            "bytes_met": bytes_per_token <= GOAL_BYTES,
            "met": None if share is None else share >= GOAL_SHARE and bytes_per_token <= GOAL_BYTES,
        }
    if "student_alone" in rows:
        base = rows["student_alone"]["cpu_seconds"]["mean"]
        summary["student_cpu_seconds_relative_to_alone"] = {
            name: row["cpu_seconds"]["mean"] / base for name, row in rows.items()
        }
    return summary


def sizes(config):
    keys = ("corpus_bytes", "sequence_length", "batch_size", "learning_rate", "epochs", "alpha")
    return {key: config[key] for key in keys}


def teacher_training():
    """Epochs, CPU seconds and per-epoch validation perplexity of the teacher's training."""
    path = os.path.join(RUNS, "teacher", "history.csv")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        epochs = list(csv.DictReader(f))
    with open(os.path.join(RUNS, "teacher", "cpu_seconds")) as f:
        seconds = float(f.read())
    return {
        "training_epochs": len(epochs),
        "training_cpu_seconds": seconds,
        "validation_perplexity_by_epoch": [float(row["val_perplexity"]) for row in epochs],
    }


def first_run():
    first, online, store = load("fkl2"), load("online"), load("store32")
    alone = first["baseline"]["test"]["perplexity"]
    return {
        "test_perplexity": {
            "teacher_8_epochs": first["teacher"]["test"]["perplexity"],
            "student_forward_kl_teacher_8_epochs": first["student"]["test"]["perplexity"],
            "teacher_14_epochs": online["teacher"]["test"]["perplexity"],
            "student_forward_kl_online": online["student"]["test"]["perplexity"],
            "student_topk32_store": store["student"]["test"]["perplexity"],
            "student_alone": alone,
        },
        "store_share_of_online_gain": (alone - store["student"]["test"]["perplexity"])
        / (alone - online["student"]["test"]["perplexity"]),
    }


def fmt(entry, digits=2):
    if entry is None:
        return ""
    if entry["std"] is None:
        return f"{entry['mean']:.{digits}f}"
    return f"{entry['mean']:.{digits}f} ± {entry['std']:.{digits}f}"


def table(summary):
    lines = [
        "| method | seeds | validation perplexity | gain over student alone | test perplexity "
        "| student CPU s | bytes per token stored |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in summary["rows"].items():
        store = row.get("store")
        stored = "" if not store else f"{store['bytes_per_token']:.0f}"
        lines.append(
            f"| {name} | {','.join(map(str, row['seeds']))} | {fmt(row['validation_perplexity'])} "
            f"| {fmt(row.get('gain_over_student_alone'))} | {fmt(row['test_perplexity'])} "
            f"| {fmt(row['cpu_seconds'], 0)} | {stored} |"
        )
    teacher = summary.get("teacher")
    if teacher:
        lines.append(
            f"| teacher gpt_small ({teacher.get('training_epochs', '?')} epochs) | | "
            f"{teacher['validation_perplexity']:.2f} | | {teacher['test_perplexity']:.2f} | "
            f"{teacher.get('training_cpu_seconds', 0):.0f} | |"
        )
    return "\n".join(lines) + "\n"


def bench():
    """The store-speed numbers of docs/benchmarks/lm_throughput.json (`bin/bench lm`)."""
    path = os.path.join(HERE, "..", "benchmarks", "lm_throughput.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        report = json.load(f)
    return {
        "command": report["command"],
        "tokens_per_cpu_second": {
            name: entry["tokens_per_cpu_second"] for name, entry in report["variants"].items()
        },
        "input_pipeline_cpu_seconds": {
            name: entry["input_pipeline_cpu_seconds"]
            for name, entry in report["variants"].items()
            if "input_pipeline_cpu_seconds" in entry
        },
        "ratio_to_student_alone": report["cpu_time_ratio_to_student_alone"],
        "goal": report["goals"]["stored_topk_vs_student_alone"],
        "generation_tokens_per_second": report["generation"]["tokens_per_second"],
        "generation_tokens_per_cpu_second": report["generation"]["tokens_per_cpu_second"],
        "steps": report["config"]["steps"],
        "batch_size": report["config"]["batch_size"],
        "repetitions": report["config"]["repetitions"],
    }


def main():
    summary = {
        "script": "python docs/lm/summarize.py",
        "comparison": comparison(),
        "comparison_3_epochs": comparison(ROWS_3_EPOCHS, "fkl_e3"),
        "bench": bench(),
        "first_run": first_run(),
    }
    with open(os.path.join(HERE, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(HERE, "table.md"), "w") as f:
        f.write(table(summary["comparison"]))
        if summary["comparison_3_epochs"]["rows"]:
            f.write("\nStudents trained 3 epochs:\n\n" + table(summary["comparison_3_epochs"]))


if __name__ == "__main__":
    main()
