"""Collects docs/retests/<experiment>/runs/ (copied there by run.sh) into results.json, table.md
and curve.png in each experiment's folder (and patience.png for function matching).

    python3 docs/retests/summarize.py
"""
import csv
import json
import os
import statistics

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
        "arms": (("aver", "AVER"), ("ebkd", "EBKD"), ("ca_mkd", "CA-MKD"),
                 ("ca_mkd_logits", "CA-MKD without features"), ("fitnet_mkd", "FitNet-MKD"),
                 ("ca_mkd_official", "CA-MKD with the official code's 1/K scaling")),
        "baseline_run": "aver",
    },
    "partial": {
        "title": "Partial KD: teacher cnn_large",
        "claim": ("KD-topk >= KD > KD-pt+sim > KD-pt > KD-sim > LS > student alone "
                  "(Tang et al. 2020, Table 3)"),
        "arms": (("kd_topk", "KD-topk"), ("kd", "KD"), ("kd_pt_sim", "KD-pt+sim"),
                 ("kd_pt", "KD-pt"), ("kd_sim", "KD-sim"), ("kd_rel", "KD-rel (no teacher)"),
                 ("ls", "LS (no teacher)")),
        "baseline_run": "kd",
    },
    "curriculum": {
        "title": "Curriculum and selective reliance: teacher cnn_large",
        "claim": ("Teacher-scored curriculum and selective reliance change the student "
                  "little (Khan et al., Table 2)"),
        "arms": (("kd", "KD"), ("kd_cl", "KD-CL (teacher-scored order)"),
                 ("kd_cl_sr", "KD-CL-SR")),
        "baseline_run": "kd",
    },
    "function_matching": {
        "title": "Function matching: teacher resnet8, equal epochs",
        "claim": ("consistent > independent teaching; function matching >= consistent, and it "
                  "needs long schedules (Beyer et al. 2022)"),
        "arms": (("fixed", "fixed teacher (cached, no augmentation)"),
                 ("independent", "independent views"), ("consistent", "consistent views"),
                 ("function_matching", "function matching (consistent + mixup)")),
        "baseline_run": "fixed",
        "patience": ("function_matching_10ep", "function_matching", "function_matching_60ep",
                     "function_matching_120ep", "function_matching_240ep"),
        "long_fixed": "fixed_120ep",
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
    return {"values": values, "mean": statistics.mean(series),
            "std": statistics.stdev(series) if len(series) > 1 else None}


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
    out = {"test_accuracy": stats(accuracy), "final_train_accuracy": stats(final_train),
            "val_accuracy_spread_last_10_epochs": round(max(last), 4),
            "seconds": stats(seconds), "val_curves": curves}
    if reliance:
        out["mean_reliance"] = stats(reliance)
    if weights:  # multi-teacher: each teacher's mean weight on the training set, seed mean
        out["mean_teacher_weights"] = [round(statistics.mean(w[k] for w in weights.values()), 4)
                                       for k in range(len(next(iter(weights.values()))))]
    return out


def difference(a, b):
    keys = sorted(set(a["values"]) & set(b["values"]))
    diffs = {k: a["values"][k] - b["values"][k] for k in keys}
    out = stats(diffs) if diffs else None
    if out:
        out["ahead"] = sum(d > 0 for d in diffs.values())
    return out


def sizes(experiment, spec):
    results = read_json(os.path.join(run_folder(experiment, spec["baseline_run"], 0),
                                     "results.json"))
    flags = results["flags"]
    teachers = results.get("teachers") or [results["teacher"]]
    return {"train_examples": flags["train_limit"],
            "validation_examples": round(FASHION_MNIST_TRAIN * flags["validation_fraction"]),
            "test_examples": "all 10,000" if not flags["test_limit"] else flags["test_limit"],
            "epochs": flags["epochs"], "batch_size": flags["batch_size"],
            "optimizer": f"{flags['optimizer']} {flags['learning_rate']}, {flags['lr_schedule']}",
            "precision": flags["precision"], "student": results["student"]["arch"],
            "student_params": results["student"]["params"],
            "teachers": [{"file": t["arch"], "test_accuracy": t["accuracy"],
                          "params": t["params"], **recorded(t["arch"])} for t in teachers]}


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
            arms[name] = {"label": label, **measured,
                          "minus_alone": difference(measured["test_accuracy"],
                                                    alone["test_accuracy"])}
    out = {"title": spec["title"], "paper_claim": spec["claim"], "seeds": list(SEEDS),
           "sizes": sizes(experiment, spec), "arms": arms}
    if "patience" in spec:
        out["patience"] = patience(experiment, spec["patience"])
    if "long_fixed" in spec:
        out["long_fixed"] = long_fixed(experiment, spec["long_fixed"])
    return out


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
    return {"run": name, "epochs": next(iter(epochs.values())),
            "fixed_test_accuracy": stats(fixed), "alone_test_accuracy": stats(alone),
            "fixed_minus_alone": difference(stats(fixed), stats(alone))}


def patience(experiment, names):
    """Function matching at several schedule lengths: test accuracy per seed, and seconds."""
    points = []
    for name in names:
        accuracy = per_seed(experiment, name, lambda r: r["student"]["accuracy"])
        if accuracy:
            epochs = per_seed(experiment, name, lambda r: r["flags"]["epochs"])
            seconds = per_seed(experiment, name, lambda r: r["seconds"]["distill"])
            points.append({"run": name, "epochs": next(iter(epochs.values())),
                           "test_accuracy": stats(accuracy), "seconds": stats(seconds)})
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
    teachers = ", ".join(f"{os.path.basename(t['file'])} {100 * t['test_accuracy']:.2f}"
                         for t in s["teachers"])
    lines = [f"# {out['title']}", "",
             f"Paper: {out['paper_claim']}.", "",
             f"Student {s['student']} ({s['student_params']:,} parameters); {s['train_examples']}"
             f" training images, {s['validation_examples']} validation images, test "
             f"{s['test_examples']}; {s['epochs']} epochs, batch {s['batch_size']}, "
             f"{s['optimizer']}, {s['precision']}; seeds {', '.join(map(str, out['seeds']))}. "
             f"Teachers (test accuracy %): {teachers}.", "",
             "| run | test accuracy % | minus alone (points) | ahead of alone | final train "
             "accuracy % | val spread, last 10 epochs | seconds |",
             "|---|---|---|---|---|---|---|"]
    for name, arm in out["arms"].items():
        minus = arm.get("minus_alone")
        lines.append(
            f"| {arm['label']} | {pm(arm['test_accuracy'])} | "
            f"{pm(minus) if minus else '-'} | "
            f"{ahead(minus)} | "
            f"{pm(arm['final_train_accuracy'])} | "
            f"{arm['val_accuracy_spread_last_10_epochs']:.4f} | "
            f"{pm(arm['seconds'], 1, 0)} |")
    weighted = {arm["label"]: arm["mean_teacher_weights"] for arm in out["arms"].values()
                if "mean_teacher_weights" in arm}
    if weighted:
        names = [os.path.basename(t["file"]).split(".")[0] for t in s["teachers"]]
        lines += ["", "Mean teacher weights on the training set (seed mean):", "",
                  "| run | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        lines += [f"| {label} | " + " | ".join(f"{w:.3f}" for w in ws) + " |"
                  for label, ws in weighted.items()]
    for arm in out["arms"].values():
        if "mean_reliance" in arm:
            lines += ["", f"{arm['label']}: mean KD weight lambda over training "
                          f"{pm(arm['mean_reliance'], 1, 3)} (KD uses alpha = 0.9)."]
    if out.get("patience"):
        lines += ["", "Function matching by schedule length (cosine schedule of that length):", "",
                  "| epochs | seeds | test accuracy % | minus the shorter schedule (points) | "
                  "ahead | seconds |", "|---|---|---|---|---|---|"]
        lines += [f"| {p['epochs']} | {seeds_of(p['test_accuracy'])} | {pm(p['test_accuracy'])} | "
                  f"{pm(p.get('minus_shorter'))} | {ahead(p.get('minus_shorter'))} | "
                  f"{pm(p['seconds'], 1, 0)} |" for p in out["patience"]]
    long = out.get("long_fixed")
    if long:
        fm = next((p for p in out.get("patience") or [] if p["epochs"] == long["epochs"]), None)
        lines += ["", f"At {long['epochs']} epochs:", "",
                  "| run | seeds | test accuracy % | minus alone (points) | ahead |",
                  "|---|---|---|---|---|"]
        alone = long["alone_test_accuracy"]
        if fm:
            minus = difference(fm["test_accuracy"], alone)
            lines.append(f"| function matching | {seeds_of(fm['test_accuracy'])} | "
                         f"{pm(fm['test_accuracy'])} | {pm(minus)} | {ahead(minus)} |")
        lines += [f"| fixed teacher | {seeds_of(long['fixed_test_accuracy'])} | "
                  f"{pm(long['fixed_test_accuracy'])} | {pm(long['fixed_minus_alone'])} | "
                  f"{ahead(long['fixed_minus_alone'])} |",
                  f"| student alone | {seeds_of(alone)} | {pm(alone)} | - | - |"]
        if fm:
            minus = difference(fm["test_accuracy"], long["fixed_test_accuracy"])
            lines += ["", f"Function matching minus the fixed teacher at {long['epochs']} epochs: "
                          f"{pm(minus)} points, ahead on {ahead(minus)} seeds."]
    return "\n".join(lines) + "\n"


def curve(out, path):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, arm in out["arms"].items():
        curves = list(arm["val_curves"].values())
        length = min(len(c) for c in curves)
        mean = [statistics.mean(c[i] for c in curves) for i in range(length)]
        ax.plot(range(1, length + 1), mean, label=arm["label"],
                linestyle="--" if name == ALONE else "-")
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
        ax.errorbar(epochs, [100 * p["mean"] for p in summaries],
                    yerr=[100 * (p["std"] or 0) for p in summaries], fmt=fmt, capsize=3, **kwargs)

    points = out["patience"]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    errorbar(ax, [p["epochs"] for p in points], [p["test_accuracy"] for p in points], "o-",
             label="function matching")
    fixed = out["arms"].get("fixed")
    if fixed:
        ax.axhline(100 * fixed["test_accuracy"]["mean"], color="gray", linestyle=":",
                   label=f"fixed teacher, {out['sizes']['epochs']} epochs")
    long = out.get("long_fixed")
    if long:
        errorbar(ax, [long["epochs"]], [long["fixed_test_accuracy"]], "s", color="gray",
                 label=f"fixed teacher, {long['epochs']} epochs")
        errorbar(ax, [long["epochs"]], [long["alone_test_accuracy"]], "^", color="black",
                 label=f"student alone, {long['epochs']} epochs")
    ax.set_xscale("log")
    ax.set_xlabel("epochs (cosine schedule of that length)")
    ax.set_ylabel("test accuracy % (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
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
