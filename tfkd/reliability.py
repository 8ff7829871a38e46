"""Reliability diagrams: per-bin accuracy against confidence (`tfkd.calibration.calibration_bins`),
Guo et al. (2017), "On calibration of modern neural networks"."""

import numpy as np

from tfkd.calibration import DEFAULT_BINS, calibration_bins


def reliability_diagram(
    probs: np.ndarray,
    labels: np.ndarray,
    path: str,
    num_bins: int = DEFAULT_BINS,
    title: str | None = None,
):
    """Writes a PNG reliability diagram: per-bin accuracy bars against the diagonal, the gap to the
    mean confidence shaded, the bin counts below, ECE in the title.

    Args:
      probs: [n, K] rows of probabilities.
      labels: [n] integers in [0, K).
      path: the PNG to write.
    Returns:
      the `calibration_bins` dictionary that was drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    bins = calibration_bins(probs, labels, num_bins, "reliability_diagram")
    edges, counts = bins["edges"], bins["counts"]
    width = edges[1] - edges[0]
    centers = edges[:-1] + width / 2
    filled = counts > 0
    figure, (top, bottom) = pyplot.subplots(
        2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.bar(
        centers[filled],
        bins["accuracy"][filled],
        width=width,
        color="#1f77b4",
        edgecolor="black",
        linewidth=0.6,
        label="accuracy",
    )
    low = np.minimum(bins["accuracy"], bins["confidence"])[filled]
    gap = np.abs(bins["accuracy"] - bins["confidence"])[filled]
    top.bar(
        centers[filled],
        gap,
        bottom=low,
        width=width,
        color="#d62728",
        alpha=0.35,
        edgecolor="#d62728",
        hatch="//",
        linewidth=0.6,
        label="gap to confidence",
    )
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    top.legend(loc="upper left", fontsize=8)
    heading = f"ECE = {100 * bins['ece']:.2f}%  ({int(counts.sum())} examples, {num_bins} bins)"
    top.set_title(f"{title}\n{heading}" if title else heading, fontsize=10)
    bottom.bar(centers, counts, width=width, color="#7f7f7f", edgecolor="black", linewidth=0.6)
    for center, count in zip(centers[filled], counts[filled]):
        bottom.text(center, count, str(count), ha="center", va="bottom", fontsize=6)
    bottom.set_yscale("log" if counts.max() > 50 * max(1, counts[filled].min()) else "linear")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence (top-1 probability)")
    bottom.set_ylabel("examples")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return bins
