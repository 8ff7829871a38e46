"""`bin/export`: flags -> tfkd.experiment.tools.export_model.

A trained `.keras` classifier -> SavedModel / TFLite files in --output_dir, with a parity,
size and latency report (export_report.json, export_report.md).
"""

from absl import flags

from tfkd.cli import common
from tfkd.cli import flags as flag_table
from tfkd.experiment import tools
from tfkd.exporting import student as export
from tfkd.exporting.parity import Measurement

PROGRAM = "bin/export"
DOC = (
    "Export a trained classifier to SavedModel / TFLite with a parity report: "
    "bin/export --model=PATH.keras --dataset=NAME --output_dir=DIR [--formats=...]"
)


def define_export_flags(flag_values):
    """bin/export's own flags, under the module name "bin/export"."""
    own = {"flag_values": flag_values, "module_name": PROGRAM}
    flags.DEFINE_string("model", None, "The trained classifier to export (.keras file).", **own)
    flags.DEFINE_list(
        "formats",
        list(tools.EXPORT_FORMATS),
        f"Formats to write, a comma list of {', '.join(export.FORMATS)}.",
        **own,
    )
    flags.DEFINE_enum(
        "int8_io",
        "int8",
        list(export.INT8_IO),
        "tflite_int8 input/output tensors: int8 (quantised) or float (float32).",
        **own,
    )
    flags.DEFINE_integer(
        "representative_samples",
        export.REPRESENTATIVE_SAMPLES,
        "Training-split examples that calibrate tflite_int8.",
        **own,
    )
    flags.DEFINE_integer(
        "latency_calls", 200, "Timed single-example calls per format (after a warm-up).", **own
    )
    flags.DEFINE_integer(
        "throughput_batch_size",
        256,
        "Batch size of the accuracy pass and of the throughput measurement.",
        **own,
    )
    flags.DEFINE_integer("num_threads", 1, "LiteRT interpreter threads.", **own)
    flags.DEFINE_string("output_dir", None, "Output folder (required).", **own)
    flags.DEFINE_boolean("overwrite", False, "Replace an existing, non-empty --output_dir.", **own)
    flags.DEFINE_integer("verbose", 1, "0 silent, otherwise progress bars.", **own)


def new_flag_values():
    return flag_table.tool_flag_values(PROGRAM, define_export_flags)


def arguments(flag_values):
    """Parsed flags -> the keyword arguments of tools.export_model."""
    return {
        "model": flag_values.model,
        "data_config": flag_table.data_config(flag_values),
        "output_dir": flag_values.output_dir,
        "formats": flag_values.formats,
        "settings": export.ExportSettings(
            verbose=flag_values.verbose > 0,
            overwrite=flag_values.overwrite,
            int8_io=flag_values.int8_io,
            representative_samples=flag_values.representative_samples,
            measurement=Measurement(
                latency_calls=flag_values.latency_calls,
                batch_size=flag_values.throughput_batch_size,
                num_threads=flag_values.num_threads,
            ),
        ),
    }


def print_summary(report, model, output_dir):
    print(f"\ntfkd export of {model} to {output_dir} ({report['test_examples']} test examples)")
    print(f"  {'keras':<16}accuracy {report['keras']['accuracy']:.4f}")
    for name, entry in report["formats"].items():
        latency = entry.get("latency_ms_median")  # text exports are not timed
        print(
            f"  {name:<16}accuracy {entry['accuracy']:.4f}   agreement "
            f"{100 * entry['agreement']:.2f}%   {entry['size_bytes']:>10,} bytes"
            + ("" if latency is None else f"   {latency:.3f} ms")
        )
        if "serve_text" in entry:
            parity = entry["serve_text"]
            print(
                f"  {'  serve_text':<16}accuracy {parity['accuracy']:.4f}   agreement "
                f"{100 * parity['agreement']:.2f}%   (raw strings, tokenizer inside)"
            )
    for name, goal in report.get("goals", {}).items():
        print(
            f"  goal {name}: {goal['value']:.4f} ({goal['target']}) "
            f"{'met' if goal['met'] else 'NOT met'}"
        )


def main(argv):
    """Runs bin/export on `argv` (program name first); returns export_report.json's dictionary."""
    common.handle_help(argv, DOC, flag_values=new_flag_values())
    flag_values = flag_table.parse(argv[1:], new_flag_values(), PROGRAM)
    try:
        report = tools.export_model(**arguments(flag_values))
    except (ValueError, FileExistsError) as error:
        raise flag_table.flag_error(error, flag_values) from error
    print_summary(report, flag_values.model, flag_values.output_dir)
    return report


def entry():
    common.run_tool(main)
