"""What a search writes about its trials: trials.csv, trials.md, trials.png and best.flags."""

import csv
import io
import os

from tfkd.atomic import write_text
from tfkd.experiment.command_line import flagfile_text
from tfkd.tuning.hypermodel import OBJECTIVE


def table_columns(rows):
    columns = []
    for row in rows:
        columns += [name for name in row if name not in columns]
    return columns


def csv_text(rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=table_columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def markdown_text(rows, title):
    columns = table_columns(rows)

    def cell(value):
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value).replace("|", "\\|")

    lines = [
        f"# {title}",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(cell(row.get(name)) for name in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot_trials(rows, space, path):
    """trials.png: the validation accuracy of every completed trial against each searched value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    done = [row for row in rows if row.get(OBJECTIVE) is not None]
    figure, axes = plt.subplots(
        1, len(space), figsize=(3.2 * len(space), 3.0), sharey=True, squeeze=False
    )
    scores = [row[OBJECTIVE] for row in done]
    for axis, parameter in zip(axes[0], space):
        values = [row[parameter.name] for row in done]
        if parameter.kind in ("bool", "string"):  # categories on evenly spaced positions
            labels = [str(value) for value in (parameter.values or sorted(set(values), key=str))]
            positions = [labels.index(str(value)) for value in values]
            axis.set_xticks(range(len(labels)), labels)
            values = positions
        elif parameter.scale == "log":
            axis.set_xscale("log")
            axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.scatter(values, scores, s=18)
        if done:
            axis.scatter(
                values[0], scores[0], s=60, facecolors="none", edgecolors="red", label="best"
            )
        axis.set_xlabel(parameter.name)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation accuracy")
    if done:
        axes[0][0].legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_tables(output_dir, rows, space, title):
    """trials.csv, trials.md and trials.png in `output_dir`; `rows` best first."""
    write_text(os.path.join(output_dir, "trials.csv"), csv_text(rows))
    write_text(os.path.join(output_dir, "trials.md"), markdown_text(rows, title))
    plot_trials(rows, space, os.path.join(output_dir, "trials.png"))


def write_best_flags(path, config, comments):
    """An absl flagfile of every `bin/distill` flag of `config` (`bin/distill --flagfile=`)."""
    write_text(path, flagfile_text(config.to_flags(), comments=comments))
