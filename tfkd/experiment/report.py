"""What a run reports beyond accuracies: multi-teacher weights and the closing summary."""

import os

import numpy as np

from tfkd import data, methods
from tfkd import teacher_weighting as multi_teacher


def is_chief(strategy):
    """True where this process writes the output (every process but multi-worker non-chiefs)."""
    return bool(getattr(strategy.extended, "should_checkpoint", True))


def predict_all(models, x, batch_size=256):
    """[K, N, C] logits of every model on float inputs x."""
    return np.stack([model.predict(x, batch_size=batch_size, verbose=0) for model in models])


def weighting_of(method, options):
    """The logit weighting the method declares (`Method.weighting`), as
    `tfkd.teacher_weighting.teacher_weights` names it: (name, fixed weights or None)."""
    declared = methods.METHODS.get(method).weighting
    if declared is None:
        raise ValueError(f"method {method!r} declares no teacher weighting")
    return declared(options)


def plot_weights(weights, names, path, title):
    """Histogram of each teacher's per-example weight, one panel per teacher (cf. CA-MKD Fig. 3).

    weights: [N, K]; names: K labels.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = weights.shape[1]
    figure, axes = plt.subplots(1, count, figsize=(3.2 * count, 2.8), sharey=True, squeeze=False)
    # Every built-in weighting but `fixed` stays below 1 / (K - 1).
    upper = max(float(weights.max()), 1.0 / (count - 1) if count > 1 else 1.0)
    bins = np.linspace(0.0, upper, 41)
    for k, axis in enumerate(axes[0]):
        axis.hist(weights[:, k], bins=bins, color=f"C{k}")
        axis.axvline(weights[:, k].mean(), color="black", linestyle="--", linewidth=1)
        axis.set_title(f"teacher {k}: {names[k]}\nmean {weights[:, k].mean():.3f}", fontsize=9)
        axis.set_xlabel("weight")
    axes[0][0].set_ylabel("training examples")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _short_name(spec):
    """An architecture name, or a path's last two parts (a/b/t.keras -> b/t.keras)."""
    spec = os.path.normpath(str(spec))
    if os.sep not in spec:
        return spec
    return os.path.join(os.path.basename(os.path.dirname(spec)), os.path.basename(spec))


def multi_teacher_results(teachers, archs, bundle, method, options, work):
    """results.json entries: each teacher's accuracy, the majority-vote ensemble's, and the
    distribution of the logit weights over the training split (written as teacher_weights.png).
    """
    test_x, test_y = data.to_float(bundle.test[0]), np.asarray(bundle.test[1])
    test_logits = predict_all(teachers, test_x)
    entries = [
        {
            "arch": arch,
            "accuracy": float(np.mean(np.argmax(logits, -1) == test_y)),
            "params": int(teacher.count_params()),
        }
        for teacher, arch, logits in zip(teachers, archs, test_logits)
    ]
    ensemble = float(np.mean(multi_teacher.majority_vote(test_logits) == test_y))
    weighting, fixed = weighting_of(method, options)
    train_logits = predict_all(teachers, data.to_float(bundle.train[0]))
    weights = np.asarray(
        multi_teacher.teacher_weights(train_logits, np.asarray(bundle.train[1]), weighting, fixed)
    )
    if work.write:
        plot_weights(
            weights,
            [_short_name(a) for a in archs],
            work.file("teacher_weights.png"),
            f"{method}: per-example teacher weights ({weighting}) on the training split",
        )
    for k, entry in enumerate(entries):
        print(f"  teacher {k}  {entry['arch']:<28}accuracy {entry['accuracy']:.4f}", flush=True)
    print(f"  ensemble (majority vote) accuracy {ensemble:.4f}", flush=True)
    return {
        "teachers": entries,
        "ensemble": {"accuracy": ensemble, "rule": "majority vote, ties to the earliest teacher"},
        "teacher_weights": {
            "weighting": weighting,
            "split": "train",
            "mean": weights.mean(axis=0).tolist(),
            "std": weights.std(axis=0).tolist(),
            "plot": "teacher_weights.png",
        },
    }


def print_summary(results, output_dir):
    """Prints a finished run's results (`results.json`'s dict): the teacher's and student's
    accuracies and sizes, the baseline and the exports in `output_dir`."""
    rows = [(role, results[role]) for role in ("teacher", "student") if role in results]
    print(f"\ntfkd {results['method']} on {results['dataset']}")
    width = max([28] + [len(str(entry["arch"])) + 2 for _, entry in rows])  # any path fits
    for role, entry in rows:
        print(
            f"  {role:<9}{entry['arch']:<{width}}accuracy {entry['accuracy']:.4f}   "
            f"params {entry['params']:,}"
        )
    if "baseline" in results:
        print(
            f"  {'baseline':<9}{'(student alone)':<{width}}accuracy "
            f"{results['baseline']['accuracy']:.4f}"
        )
    exports = results.get("exports", {})
    files = [v for k, v in exports.items() if k in ("keras", "savedmodel", "tflite")]
    print(f"  output   {output_dir}: results.json, history.csv" + "".join(f", {f}" for f in files))
    if "tflite_agreement" in exports:
        print(
            f"  tflite   accuracy {exports['tflite_accuracy']:.4f}, agreement with Keras "
            f"{100 * exports['tflite_agreement']:.2f}%"
        )
