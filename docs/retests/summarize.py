"""Collects docs/retests/<experiment>/runs/ (copied there by run.sh) into results.json, table.md
and curve.png in each experiment's folder (and patience.png for function matching).

    python3 docs/retests/summarize.py
"""

import csv
import json
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = (0, 1, 2)
FASHION_MNIST_TRAIN = 60000  # images in the Fashion-MNIST training split (validation drawn from it)
ALONE = "alone"

EXPERIMENTS = {
    "multi_teacher": {
        "title": "Multi-teacher KD: three converged teachers (resnet8, resnet20, cnn_large)",
        "claim": "CA-MKD > EBKD > AVER (Zhang et al. 2022, Table 1)",
        "arms": (
            ("aver", "AVER"),
            ("ebkd", "EBKD"),
            ("ca_mkd", "CA-MKD"),
            ("ca_mkd_logits", "CA-MKD without features"),
            ("fitnet_mkd", "FitNet-MKD"),
            ("ca_mkd_official", "CA-MKD with the official code's 1/K scaling"),
        ),
        "baseline_run": "aver",
    },
    "partial": {
        "title": "Partial KD: teacher cnn_large",
        "claim": (
            "KD-topk >= KD > KD-pt+sim > KD-pt > KD-sim > LS > student alone "
            "(Tang et al. 2020, Table 3)"
        ),
        "arms": (
            ("kd_topk", "KD-topk"),
            ("kd", "KD"),
            ("kd_pt_sim", "KD-pt+sim"),
            ("kd_pt", "KD-pt"),
            ("kd_sim", "KD-sim"),
            ("kd_rel", "KD-rel (no teacher)"),
            ("ls", "LS (no teacher)"),
        ),
        "baseline_run": "kd",
    },
    "curriculum": {
        "title": "Curriculum and selective reliance: teacher cnn_large",
        "claim": (
            "Teacher-scored curriculum and selective reliance change the student "
            "little (Khan et al., Table 2)"
        ),
        "arms": (("kd", "KD"), ("kd_cl", "KD-CL (teacher-scored order)"), ("kd_cl_sr", "KD-CL-SR")),
        "baseline_run": "kd",
    },
    "function_matching": {
        "title": "Function matching: teacher resnet8, equal epochs",
        "claim": (
            "consistent > independent teaching; function matching >= consistent, and it "
            "needs long schedules (Beyer et al. 2022)"
        ),
        "arms": (
            ("fixed", "KD, teaching none (teacher cached, no augmentation)"),
            ("independent", "independent views"),
            ("consistent", "consistent views"),
            ("function_matching", "function matching (consistent + mixup)"),
        ),
        "baseline_run": "fixed",
        "patience": (
            "function_matching_10ep",
            "function_matching",
            "function_matching_60ep",
            "function_matching_120ep",
            "function_matching_240ep",
        ),
        "long_fixed": "fixed_120ep",
        "long_fixed_teaching": "fixed_teaching_120ep",
    },
}


def read_json(path):
    with open(path) as f:
        return json.load(f)


def history(path):
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def stats(values):
    series = list(values.values())
    return {
        "values": values,
        "mean": statistics.mean(series),
        "std": statistics.stdev(series) if len(series) > 1 else None,
    }


def run_folder(experiment, name, seed):
    return os.path.join(HERE, experiment, "runs", f"{name}-seed{seed}")


def collect(experiment, name, csv_name="history.csv", key="student"):
    """Per-seed test accuracy and the validation curves of the runs named `name`."""
    accuracy, curves, seconds, final_train, weights, reliance = {}, {}, {}, {}, {}, {}
    for seed in SEEDS:
        folder = run_folder(experiment, name, seed)
        if not os.path.isfile(os.path.join(folder, csv_name)):
            continue
        results = read_json(os.path.join(folder, "results.json"))
        rows = history(os.path.join(folder, csv_name))
        accuracy[str(seed)] = results[key]["accuracy"]
        curves[str(seed)] = [row["val_accuracy"] for row in rows]
        final_train[str(seed)] = rows[-1]["accuracy"]
        seconds[str(seed)] = results["seconds"]["distill" if key == "student" else "baseline"]
        if "reliance" in rows[0]:  # kd_sr: the epoch means of the per-batch KD weight lambda
            reliance[str(seed)] = statistics.mean(row["reliance"] for row in rows)
        if key == "student" and results.get("teacher_weights"):
            weights[str(seed)] = results["teacher_weights"]["mean"]
    if not accuracy:
        return None
    last = [max(c[-10:]) - min(c[-10:]) for c in curves.values()]
    out = {
        "test_accuracy": stats(accuracy),
        "final_train_accuracy": stats(final_train),
        "val_accuracy_spread_last_10_epochs": round(max(last), 4),
        "seconds": stats(seconds),
        "val_curves": curves,
    }
    if reliance:
        out["mean_reliance"] = stats(reliance)
    if weights:  # multi-teacher: each teacher's mean weight on the training set, seed mean
        out["mean_teacher_weights"] = [
            round(statistics.mean(w[k] for w in weights.values()), 4)
            for k in range(len(next(iter(weights.values()))))
        ]
    return out


def difference(a, b):
    keys = sorted(set(a["values"]) & set(b["values"]))
    diffs = {k: a["values"][k] - b["values"][k] for k in keys}
    out = stats(diffs) if diffs else None
    if out:
        out["ahead"] = sum(d > 0 for d in diffs.values())
    return out


def sizes(experiment, spec):
    results = read_json(
        os.path.join(run_folder(experiment, spec["baseline_run"], 0), "results.json")
    )
    flags = results["flags"]
    teachers = results.get("teachers") or [results["teacher"]]
    return {
        "train_examples": flags["train_limit"],
        "validation_examples": round(FASHION_MNIST_TRAIN * flags["validation_fraction"]),
        "test_examples": "all 10,000" if not flags["test_limit"] else flags["test_limit"],
        "epochs": flags["epochs"],
        "batch_size": flags["batch_size"],
        "optimizer": f"{flags['optimizer']} {flags['learning_rate']}, {flags['lr_schedule']}",
        "precision": flags["precision"],
        "student": results["student"]["arch"],
        "student_params": results["student"]["params"],
        "teachers": [
            {
                "file": t["arch"],
                "test_accuracy": t["accuracy"],
                "params": t["params"],
                **recorded(t["arch"]),
            }
            for t in teachers
        ],
    }


def recorded(path):
    """What docs/teachers/teachers.json records of the committed teacher at `path`: T*, ECE."""
    with open(os.path.join(HERE, "..", "teachers", "teachers.json")) as f:
        for teacher in json.load(f)["teachers"]:
            if os.path.basename(teacher["file"]) == os.path.basename(path):
                return {"t_star": teacher["temperature"], "ece": teacher["ece"]}
    return {}


def summarize(experiment, spec):
    if not os.path.isdir(os.path.join(HERE, experiment, "runs")):
        return None
    arms = {}
    alone = collect(experiment, spec["baseline_run"], "baseline.csv", key="baseline")
    if alone is None:
        return None
    arms[ALONE] = {"label": "student alone", **alone}
    for name, label in spec["arms"]:
        measured = collect(experiment, name)
        if measured is not None:
            arms[name] = {
                "label": label,
                **measured,
                "minus_alone": difference(measured["test_accuracy"], alone["test_accuracy"]),
            }
    out = {
        "title": spec["title"],
        "paper_claim": spec["claim"],
        "seeds": list(SEEDS),
        "sizes": sizes(experiment, spec),
        "arms": arms,
    }
    if "patience" in spec:
        out["patience"] = patience(experiment, spec["patience"])
    if "long_fixed" in spec:
        out["long_fixed"] = long_fixed(experiment, spec["long_fixed"])
    if "long_fixed_teaching" in spec:
        out["long_fixed_teaching"] = long_fixed_teaching(experiment, spec["long_fixed_teaching"])
    return out


def long_fixed_teaching(experiment, name):
    """The paper's fixed teacher (--teaching=fixed: augmented student, the teacher's outputs on
    the clean images) at a longer schedule, per seed, or None."""
    accuracy = per_seed(experiment, name, lambda r: r["student"]["accuracy"])
    if not accuracy:
        return None
    epochs = per_seed(experiment, name, lambda r: r["flags"]["epochs"])
    teaching = per_seed(experiment, name, lambda r: r["flags"]["teaching"])
    seconds = per_seed(experiment, name, lambda r: r["seconds"]["distill"])
    return {
        "run": name,
        "epochs": next(iter(epochs.values())),
        "teaching": next(iter(teaching.values())),
        "test_accuracy": stats(accuracy),
        "seconds": stats(seconds),
    }


def per_seed(experiment, name, read):
    """read(results) for each seed whose run `name` is in runs/, keyed by seed."""
    values = {}
    for seed in SEEDS:
        path = os.path.join(run_folder(experiment, name, seed), "results.json")
        if os.path.isfile(path):
            values[str(seed)] = read(read_json(path))
    return values


def long_fixed(experiment, name):
    """The fixed teacher and the student alone with a longer schedule, per seed, or None."""
    epochs = per_seed(experiment, name, lambda r: r["flags"]["epochs"])
    if not epochs:
        return None
    fixed = per_seed(experiment, name, lambda r: r["student"]["accuracy"])
    alone = per_seed(experiment, name, lambda r: r["baseline"]["accuracy"])
    return {
        "run": name,
        "epochs": next(iter(epochs.values())),
        "fixed_test_accuracy": stats(fixed),
        "alone_test_accuracy": stats(alone),
        "fixed_minus_alone": difference(stats(fixed), stats(alone)),
    }


def patience(experiment, names):
    """Function matching at several schedule lengths: test accuracy per seed, and seconds."""
    points = []
    for name in names:
        accuracy = per_seed(experiment, name, lambda r: r["student"]["accuracy"])
        if accuracy:
            epochs = per_seed(experiment, name, lambda r: r["flags"]["epochs"])
            seconds = per_seed(experiment, name, lambda r: r["seconds"]["distill"])
            points.append(
                {
                    "run": name,
                    "epochs": next(iter(epochs.values())),
                    "test_accuracy": stats(accuracy),
                    "seconds": stats(seconds),
                }
            )
    points.sort(key=lambda p: p["epochs"])
    for shorter, longer in zip(points, points[1:]):
        longer["minus_shorter"] = difference(longer["test_accuracy"], shorter["test_accuracy"])
    return points


def seeds_of(summary):
    return ", ".join(summary["values"])


def pm(summary, scale=100, digits=2):
    if summary is None:
        return "-"
    std = summary["std"]
    text = f"{scale * summary['mean']:.{digits}f}"
    return text if std is None else f"{text} ± {scale * std:.{digits}f}"


def ahead(minus):
    return f"{minus['ahead']}/{len(minus['values'])}" if minus else "-"


def table(out):
    s = out["sizes"]
    teachers = ", ".join(
        f"{os.path.basename(t['file'])} {100 * t['test_accuracy']:.2f}" for t in s["teachers"]
    )
    lines = [
        f"# {out['title']}",
        "",
        f"Paper: {out['paper_claim']}.",
        "",
        f"Student {s['student']} ({s['student_params']:,} parameters); {s['train_examples']}"
        f" training images, {s['validation_examples']} validation images, test "
        f"{s['test_examples']}; {s['epochs']} epochs, batch {s['batch_size']}, "
        f"{s['optimizer']}, {s['precision']}; seeds {', '.join(map(str, out['seeds']))}. "
        f"Teachers (test accuracy %): {teachers}.",
        "",
        "| run | test accuracy % | minus alone (points) | ahead of alone | final train "
        "accuracy % | val spread, last 10 epochs | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, arm in out["arms"].items():
        minus = arm.get("minus_alone")
        lines.append(
            f"| {arm['label']} | {pm(arm['test_accuracy'])} | "
            f"{pm(minus) if minus else '-'} | "
            f"{ahead(minus)} | "
            f"{pm(arm['final_train_accuracy'])} | "
            f"{arm['val_accuracy_spread_last_10_epochs']:.4f} | "
            f"{pm(arm['seconds'], 1, 0)} |"
        )
    weighted = {
        arm["label"]: arm["mean_teacher_weights"]
        for arm in out["arms"].values()
        if "mean_teacher_weights" in arm
    }
    if weighted:
        names = [os.path.basename(t["file"]).split(".")[0] for t in s["teachers"]]
        lines += [
            "",
            "Mean teacher weights on the training set (seed mean):",
            "",
            "| run | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        lines += [
            f"| {label} | " + " | ".join(f"{w:.3f}" for w in ws) + " |"
            for label, ws in weighted.items()
        ]
    for arm in out["arms"].values():
        if "mean_reliance" in arm:
            lines += [
                "",
                f"{arm['label']}: mean KD weight lambda over training "
                f"{pm(arm['mean_reliance'], 1, 3)} (KD uses alpha = 0.9).",
            ]
    if out.get("patience"):
        lines += [
            "",
            "Function matching by schedule length (cosine schedule of that length):",
            "",
            "| epochs | seeds | test accuracy % | minus the shorter schedule (points) | "
            "ahead | seconds |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {p['epochs']} | {seeds_of(p['test_accuracy'])} | {pm(p['test_accuracy'])} | "
            f"{pm(p.get('minus_shorter'))} | {ahead(p.get('minus_shorter'))} | "
            f"{pm(p['seconds'], 1, 0)} |"
            for p in out["patience"]
        ]
    long = out.get("long_fixed")
    if long:
        fm = next((p for p in out.get("patience") or [] if p["epochs"] == long["epochs"]), None)
        lines += [
            "",
            f"At {long['epochs']} epochs:",
            "",
            "| run | seeds | test accuracy % | minus alone (points) | ahead |",
            "|---|---|---|---|---|",
        ]
        alone = long["alone_test_accuracy"]
        if fm:
            minus = difference(fm["test_accuracy"], alone)
            lines.append(
                f"| function matching | {seeds_of(fm['test_accuracy'])} | "
                f"{pm(fm['test_accuracy'])} | {pm(minus)} | {ahead(minus)} |"
            )
        teaching = out.get("long_fixed_teaching")
        if teaching:
            minus = difference(teaching["test_accuracy"], alone)
            lines.append(
                f"| fixed teacher, --teaching=fixed | "
                f"{seeds_of(teaching['test_accuracy'])} | "
                f"{pm(teaching['test_accuracy'])} | {pm(minus)} | {ahead(minus)} |"
            )
        lines += [
            f"| KD, teaching none (no augmentation) | "
            f"{seeds_of(long['fixed_test_accuracy'])} | "
            f"{pm(long['fixed_test_accuracy'])} | {pm(long['fixed_minus_alone'])} | "
            f"{ahead(long['fixed_minus_alone'])} |",
            f"| student alone | {seeds_of(alone)} | {pm(alone)} | - | - |",
        ]
        if fm:
            minus = difference(fm["test_accuracy"], long["fixed_test_accuracy"])
            lines += [
                "",
                f"Function matching minus KD on the un-augmented batches (teaching "
                f"none) at {long['epochs']} epochs: {pm(minus)} points, ahead on "
                f"{ahead(minus)} seeds.",
            ]
            if teaching:
                minus = difference(fm["test_accuracy"], teaching["test_accuracy"])
                lines += [
                    "",
                    f"Function matching minus the fixed teacher (--teaching=fixed) "
                    f"at {long['epochs']} epochs: {pm(minus)} points, ahead on "
                    f"{ahead(minus)} seeds.",
                ]
    return "\n".join(lines) + "\n"


def curve(out, path):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, arm in out["arms"].items():
        curves = list(arm["val_curves"].values())
        length = min(len(c) for c in curves)
        mean = [statistics.mean(c[i] for c in curves) for i in range(length)]
        ax.plot(
            range(1, length + 1), mean, label=arm["label"], linestyle="--" if name == ALONE else "-"
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (mean over seeds)")
    ax.set_title(out["title"], fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def patience_plot(out, path):
    def errorbar(ax, epochs, summaries, fmt, **kwargs):
        ax.errorbar(
            epochs,
            [100 * p["mean"] for p in summaries],
            yerr=[100 * (p["std"] or 0) for p in summaries],
            fmt=fmt,
            capsize=3,
            **kwargs,
        )

    points = out["patience"]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    errorbar(
        ax,
        [p["epochs"] for p in points],
        [p["test_accuracy"] for p in points],
        "o-",
        label="function matching",
    )
    fixed = out["arms"].get("fixed")
    if fixed:
        ax.axhline(
            100 * fixed["test_accuracy"]["mean"],
            color="gray",
            linestyle=":",
            label=f"KD, teaching none, {out['sizes']['epochs']} epochs",
        )
    long = out.get("long_fixed")
    if long:
        errorbar(
            ax,
            [long["epochs"]],
            [long["fixed_test_accuracy"]],
            "s",
            color="gray",
            label=f"KD, teaching none, {long['epochs']} epochs",
        )
    teaching = out.get("long_fixed_teaching")
    if teaching:
        errorbar(
            ax,
            [teaching["epochs"]],
            [teaching["test_accuracy"]],
            "D",
            color="tab:red",
            label=f"fixed teacher (--teaching=fixed), {teaching['epochs']} epochs",
        )
        errorbar(
            ax,
            [long["epochs"]],
            [long["alone_test_accuracy"]],
            "^",
            color="black",
            label=f"student alone, {long['epochs']} epochs",
        )
    ax.set_xscale("log")
    ax.set_xlabel("epochs (cosine schedule of that length)")
    ax.set_ylabel("test accuracy % (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


SELECTION_EPOCHS = 5  # a setting's validation score: the mean of its last 5 epochs


def validation_score(experiment, name, seed=0):
    """Mean validation accuracy over the last SELECTION_EPOCHS epochs of run `name`, or None."""
    path = os.path.join(run_folder(experiment, name, seed), "history.csv")
    if not os.path.isfile(path):
        return None
    curve = [row["val_accuracy"] for row in history(path)]
    return statistics.mean(curve[-SELECTION_EPOCHS:])


def choose(experiment, student, settings):
    """The setting (of run names `<student>_<setting>`) with the best seed-0 validation score;
    ties go to the first listed. Test accuracy is not read."""
    scored = [
        (validation_score(experiment, f"{student}_{s}"), -i, s) for i, s in enumerate(settings)
    ]
    scored = [t for t in scored if t[0] is not None]
    return max(scored)[2] if scored else settings[0]


# --- The converged method comparison (docs/retests/methods/) ---------------------------------

METHODS = "methods"
METHOD_STUDENTS = (
    ("cnn_small", "cnn_large -> cnn_small: a capacity-bound student"),
    ("resnet8", "cnn_large -> resnet8: a student KD helps"),
)
# arm -> (label, paper, what the paper's search tuned; the settings searched are in run.sh)
METHOD_ARMS = {
    "kd": ("KD", "Hinton et al. 2015", "temperature"),
    "dkd": ("DKD", "Zhao et al. 2022", "warm-up (beta 8, T 4)"),
    "dist": ("DIST", "Huang et al. 2022", "temperature and the relation weights"),
    "fitnet": ("FitNet", "Romero et al. 2015", "none: hint weight 100, KD at KD's chosen T"),
    "kd_ls": ("KD + logit standardization", "Sun et al. 2024", "temperature"),
    "dkd_ls": ("DKD + logit standardization", "Sun et al. 2024", "none: T 2, beta 8, warm-up 3"),
}
SETTINGS = {  # setting name -> what it sets, as run.sh passes it
    "t1": "T 1",
    "t2": "T 2",
    "t4": "T 4",
    "b8w20": "beta 8, warm-up 20 epochs",
    "b8w3": "beta 8, warm-up 3 epochs",
    "t1w1": "T 1, beta = gamma = 1",
    "t4w2": "T 4, beta = gamma = 2",
    "ls_t2": "T 2",
    "ls_t4": "T 4",
}


def methods_runs(student, arm):
    """Seed-0 search runs `<student>_<arm>_<setting>` in runs/: {setting: validation score}."""
    prefix = f"{student}_{arm}_"
    found = {}
    folder = os.path.join(HERE, METHODS, "runs")
    for entry in sorted(os.listdir(folder)):
        if not entry.startswith(prefix) or not entry.endswith("-seed0"):
            continue
        setting = entry[len(prefix) : -len("-seed0")]
        if setting.startswith("ls_"):
            continue  # kd_ls_* and dkd_ls_* belong to the kd_ls and dkd_ls arms
        score = validation_score(METHODS, entry[: -len("-seed0")])
        if score is not None:
            found[setting] = score
    return found


def methods_alone(student):
    """The student alone: whichever KD run of that student and seed carried --baseline."""
    folder = os.path.join(HERE, METHODS, "runs")
    accuracy, curves, final_train, seconds = {}, {}, {}, {}
    for seed in SEEDS:
        for entry in sorted(os.listdir(folder)):
            path = os.path.join(folder, entry)
            if (
                entry.startswith(f"{student}_kd_t")
                and entry.endswith(f"-seed{seed}")
                and os.path.isfile(os.path.join(path, "baseline.csv"))
            ):
                results = read_json(os.path.join(path, "results.json"))
                rows = history(os.path.join(path, "baseline.csv"))
                accuracy[str(seed)] = results["baseline"]["accuracy"]
                curves[str(seed)] = [row["val_accuracy"] for row in rows]
                final_train[str(seed)] = rows[-1]["accuracy"]
                seconds[str(seed)] = results["seconds"]["baseline"]
                break
    if not accuracy:
        return None
    return {
        "test_accuracy": stats(accuracy),
        "final_train_accuracy": stats(final_train),
        "val_accuracy_spread_last_10_epochs": round(
            max(max(c[-10:]) - min(c[-10:]) for c in curves.values()), 4
        ),
        "seconds": stats(seconds),
        "val_curves": curves,
    }


def methods_student(student, title):
    alone = methods_alone(student)
    if alone is None:
        return None
    arms, search = {ALONE: {"label": "student alone", "setting": "-", **alone}}, {}
    chosen = {}
    for arm, (label, paper, tuned) in METHOD_ARMS.items():
        scores = methods_runs(student, arm)
        if arm == "fitnet" or not scores:
            continue
        best = max(scores, key=lambda k: (scores[k], -sorted(scores).index(k)))
        chosen[arm] = best
        search[arm] = {
            "label": label,
            "tuned": tuned,
            "chosen": best,
            "labels": {k: SETTINGS.get(k, k) for k in scores},
            "validation_score": {k: round(v, 4) for k, v in scores.items()},
        }
    if "kd" in chosen:
        chosen["fitnet"] = chosen["kd"]
    for arm, setting in chosen.items():
        label, paper, tuned = METHOD_ARMS[arm]
        measured = collect(METHODS, f"{student}_{arm}_{setting}")
        if measured is None:
            continue
        arms[arm] = {
            "label": label,
            "paper": paper,
            "setting_key": setting,
            "setting": SETTINGS.get(setting, setting)
            + (", hint weight 100" if arm == "fitnet" else ""),
            **measured,
            "minus_alone": difference(measured["test_accuracy"], alone["test_accuracy"]),
        }
    for arm in arms:
        if arm not in (ALONE, "kd") and "kd" in arms:
            arms[arm]["minus_kd"] = difference(
                arms[arm]["test_accuracy"], arms["kd"]["test_accuracy"]
            )
    for arm, base in (("kd_ls", "kd"), ("dkd_ls", "dkd")):
        if arm in arms and base in arms:
            arms[arm]["minus_without_standardization"] = difference(
                arms[arm]["test_accuracy"], arms[base]["test_accuracy"]
            )
    kd_run = f"{student}_kd_{chosen.get('kd', 't4')}"
    spec = {"baseline_run": kd_run}
    return {
        "title": title,
        "chosen": chosen,
        "search": search,
        "sizes": sizes(METHODS, spec),
        "arms": arms,
        "complete_seeds": {arm: sorted(a["test_accuracy"]["values"]) for arm, a in arms.items()},
    }


def methods_summary():
    folder = os.path.join(HERE, METHODS, "runs")
    if not os.path.isdir(folder):
        return None
    students = {}
    for student, title in METHOD_STUDENTS:
        out = methods_student(student, title)
        if out is not None:
            students[student] = out
    out = {
        "title": "Converged method comparison: KD, DKD, DIST, FitNet and logit "
        "standardization, teacher cnn_large",
        "seeds": list(SEEDS),
        "selection": (
            f"seed 0 only: each setting's validation accuracy averaged over its last "
            f"{SELECTION_EPOCHS} epochs; the best setting then runs on seeds 0, 1 and 2 and "
            "is evaluated once on the test split"
        ),
        "students": students,
    }
    first = per_seed(METHODS, "cnn_small_alone_3000", lambda r: r["student"]["accuracy"])
    if first:
        epochs = per_seed(METHODS, "cnn_small_alone_3000", lambda r: r["flags"]["epochs"])
        out["first_experiment_sizes_alone"] = {
            "student": "cnn_small",
            "train_examples": 3000,
            "epochs": next(iter(epochs.values())),
            "test_accuracy": stats(first),
        }
    return out


def methods_table(out):
    lines = [f"# {out['title']}", "", f"Setting search: {out['selection']}.", ""]
    for student, data in out["students"].items():
        s = data["sizes"]
        lines += [
            f"## {data['title']}",
            "",
            f"Student {s['student']} ({s['student_params']:,} parameters); "
            f"{s['train_examples']} training images, {s['validation_examples']} validation "
            f"images, test {s['test_examples']}; {s['epochs']} epochs, batch "
            f"{s['batch_size']}, {s['optimizer']}, {s['precision']}. Teacher "
            + ", ".join(
                f"{os.path.basename(t['file'])} {100 * t['test_accuracy']:.2f}"
                for t in s["teachers"]
            )
            + " (test accuracy %).",
            "",
            "Search on seed 0 (validation accuracy %, mean of the last "
            f"{SELECTION_EPOCHS} epochs; the chosen setting in bold):",
            "",
            "| method | tuned | settings |",
            "|---|---|---|",
        ]
        for arm, found in data["search"].items():
            cells = [
                (
                    f"**{SETTINGS.get(k, k)}: {100 * v:.2f}**"
                    if k == found["chosen"]
                    else f"{SETTINGS.get(k, k)}: {100 * v:.2f}"
                )
                for k, v in sorted(found["validation_score"].items())
            ]
            lines.append(f"| {found['label']} | {found['tuned']} | {'; '.join(cells)} |")
        lines += [
            "",
            "| run | setting | seeds | test accuracy % | minus alone (points) | ahead "
            "of alone | minus KD (points) | ahead of KD | final train accuracy % | val "
            "spread, last 10 epochs | seconds |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, arm in data["arms"].items():
            minus, kd = arm.get("minus_alone"), arm.get("minus_kd")
            lines.append(
                f"| {arm['label']} | {arm['setting']} | {seeds_of(arm['test_accuracy'])} | "
                f"{pm(arm['test_accuracy'])} | {pm(minus) if minus else '-'} | {ahead(minus)} | "
                f"{pm(kd) if kd else '-'} | {ahead(kd)} | {pm(arm['final_train_accuracy'])} | "
                f"{arm['val_accuracy_spread_last_10_epochs']:.4f} | {pm(arm['seconds'], 1, 0)} |"
            )
        for name in ("kd_ls", "dkd_ls"):
            arm = data["arms"].get(name)
            if arm and arm.get("minus_without_standardization"):
                minus = arm["minus_without_standardization"]
                lines += [
                    "",
                    f"{arm['label']} minus the same method without it: {pm(minus)} "
                    f"points, ahead on {ahead(minus)} seeds.",
                ]
        lines.append("")
    first = out.get("first_experiment_sizes_alone")
    if first:
        lines += [
            f"The student alone at the first experiment's sizes (cnn_small, "
            f"{first['train_examples']} training images) with this {first['epochs']}-epoch "
            f"schedule: {pm(first['test_accuracy'])} % on seeds "
            f"{seeds_of(first['test_accuracy'])}.",
            "",
        ]
    return "\n".join(lines)


def methods_curve(out, path):
    students = list(out["students"].items())
    fig, axes = plt.subplots(1, len(students), figsize=(6 * len(students), 4.5), squeeze=False)
    for ax, (student, data) in zip(axes[0], students):
        for name, arm in data["arms"].items():
            curves = list(arm["val_curves"].values())
            length = min(len(c) for c in curves)
            mean = [statistics.mean(c[i] for c in curves) for i in range(length)]
            ax.plot(
                range(1, length + 1),
                mean,
                label=f"{arm['label']} ({len(curves)} seeds)",
                linestyle="--" if name == ALONE else "-",
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy (mean over seeds)")
        ax.set_title(data["title"], fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "choose":  # choose EXPERIMENT STUDENT ARM SETTING...
        print(choose(sys.argv[2], sys.argv[3], sys.argv[5:]))
        return
    out = methods_summary()
    if out and out["students"]:
        folder = os.path.join(HERE, METHODS)
        with open(os.path.join(folder, "results.json"), "w") as f:
            json.dump(out, f, indent=1)
        with open(os.path.join(folder, "table.md"), "w") as f:
            f.write(methods_table(out))
        methods_curve(out, os.path.join(folder, "curve.png"))
        print(methods_table(out))
    for experiment, spec in EXPERIMENTS.items():
        out = summarize(experiment, spec)
        if out is None:
            continue
        folder = os.path.join(HERE, experiment)
        with open(os.path.join(folder, "results.json"), "w") as f:
            json.dump(out, f, indent=1)
        with open(os.path.join(folder, "table.md"), "w") as f:
            f.write(table(out))
        curve(out, os.path.join(folder, "curve.png"))
        if out.get("patience"):
            patience_plot(out, os.path.join(folder, "patience.png"))
        print(table(out))


if __name__ == "__main__":
    main()
