"""The export parity report (`tfkd.exporting.parity`) written as export_report.json and as
Markdown tables (export_report.md): parity and speed, inputs and outputs, goals."""

import json
import os

from tfkd.atomic import write_text
from tfkd.exporting import formats as export

JSON_NAME, MARKDOWN_NAME = "export_report.json", "export_report.md"


def _shape(shape):
    return "[" + ", ".join("batch" if d is None else str(d) for d in shape) + "]"


def _input_text(description):
    text = f"{description['dtype']} {_shape(description['shape'])}"
    if "scale" in description:
        text += f", scale {description['scale']:.6g}, zero point {description['zero_point']}"
    return text


def to_markdown(report):
    """The report as Markdown: parity and speed table, inputs table, goals."""
    keras_entry, formats = report["keras"], report["formats"]
    settings = report["settings"]
    lines = [
        "# Export parity and latency report",
        "",
        f"{report['test_examples']} test examples. Latency: median of "
        f"{settings['latency_calls']} single-example calls after a warm-up; throughput: "
        f"batch of {settings['batch_size']} / median time of one batch call. LiteRT "
        f"interpreter with {settings['num_threads']} thread(s); Keras and SavedModel use "
        "TensorFlow's thread pools. TFLite accuracy comes from single-example calls.",
        "",
    ]
    if "int8_io" in settings:
        lines += [
            f"tflite_int8: {settings['representative_samples']} calibration examples "
            f"from the training split, {settings['int8_io']} input/output.",
            "",
        ]
    lines += [
        "| format | file | size (bytes) | size / tflite | accuracy | agreement | "
        "max / mean abs logit diff | latency (ms) | throughput (/s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| keras | {keras_entry.get('file', '(in memory)')} | "
        f"{keras_entry.get('size_bytes', '')} | | {keras_entry['accuracy']:.4f} | 1.0000 | "
        f"0 | {keras_entry['latency_ms_median']:.3f} | "
        f"{keras_entry['throughput_per_s']:.0f} |",
    ]
    for name, entry in formats.items():
        ratio = f"{entry['size_ratio']:.3f}" if "size_ratio" in entry else ""
        lines.append(
            f"| {name} | {entry['file']} | {entry['size_bytes']} | {ratio} | "
            f"{entry['accuracy']:.4f} | {entry['agreement']:.4f} | "
            f"{entry['max_abs_logit_diff']:.3g} / {entry['mean_abs_logit_diff']:.2g} | "
            f"{entry['latency_ms_median']:.3f} | "
            f"{entry['throughput_per_s']:.0f} |"
        )
    lines += [
        "",
        "## Inputs and outputs",
        "",
        "Float inputs are images scaled to [0, 1] (pixels / 255) or the raw feature "
        "vectors; the models normalise them themselves. Outputs are logits. Quantised "
        "tensors hold q = round(x / scale) + zero point, so x = (q - zero point) * scale.",
        "",
        "| format | input | output |",
        "|---|---|---|",
        f"| keras | {_input_text(keras_entry['input'])} | float32 logits |",
    ]
    for name, entry in formats.items():
        if name == "savedmodel":
            for signature, description in entry["signatures"].items():
                lines.append(
                    f"| savedmodel `{signature}` | `{description['name']}`: "
                    f"{_input_text(description)} | `{export.OUTPUT_NAME}`: float32 |"
                )
        else:
            lines.append(
                f"| {name} | {_input_text(entry['input'])} | {_input_text(entry['output'])} |"
            )
    if "uint8" in formats.get("savedmodel", {}):
        parity = formats["savedmodel"]["uint8"]
        lines += [
            "",
            f"`serve_uint8` on the raw test pixels: accuracy {parity['accuracy']:.4f}, "
            f"agreement {parity['agreement']:.4f}, max abs logit diff "
            f"{parity['max_abs_logit_diff']:.3g}.",
        ]
    if report["goals"]:
        lines += ["", "## Goals", "", "| goal | target | measured | met |", "|---|---|---:|---|"]
        for name, goal in report["goals"].items():
            lines.append(
                f"| {name} | {goal['target']} | {goal['value']:.4f} | "
                f"{'yes' if goal['met'] else 'no'} |"
            )
    versions_text = ", ".join(f"{key} {value}" for key, value in report["versions"].items())
    lines += ["", f"Environment: {versions_text}.", ""]
    return "\n".join(lines)


def write_report(report, output_dir):
    """Writes export_report.json and export_report.md atomically; returns the JSON file name."""
    write_text(os.path.join(output_dir, JSON_NAME), json.dumps(report, indent=2) + "\n")
    write_text(os.path.join(output_dir, MARKDOWN_NAME), to_markdown(report))
    return JSON_NAME
