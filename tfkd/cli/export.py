"""`bin/export`: a trained `.keras` classifier -> SavedModel / TFLite files + parity report."""
import json
import os

from absl import flags

from tfkd import data, export, teachers
from tfkd.cli import common
from tfkd.cli import flags as tfkd_flags

FLAGS = flags.FLAGS

EXPORT_DEFAULT_FORMATS = ("savedmodel", "tflite", "tflite_fp16", "tflite_dynamic", "tflite_int8")


_define = tfkd_flags.define_shared
tfkd_flags.define_data_flags()
_define(flags.DEFINE_string, "model", None, "The trained classifier to export (.keras file).")
_define(flags.DEFINE_list, "formats", list(EXPORT_DEFAULT_FORMATS),
        f"Formats to write, a comma list of {', '.join(export.FORMATS)}.")
_define(flags.DEFINE_enum, "int8_io", "int8", list(export.INT8_IO),
        "tflite_int8 input/output tensors: int8 (quantised) or float (float32).")
_define(flags.DEFINE_integer, "representative_samples", export.REPRESENTATIVE_SAMPLES,
        "Training-split examples that calibrate tflite_int8.")
_define(flags.DEFINE_integer, "latency_calls", 200,
        "Timed single-example calls per format (after a warm-up).")
_define(flags.DEFINE_integer, "throughput_batch_size", 256,
        "Batch size of the accuracy pass and of the throughput measurement.")
_define(flags.DEFINE_integer, "num_threads", 1, "LiteRT interpreter threads.")
_define(flags.DEFINE_string, "output_dir", None, "Output folder (required).")
_define(flags.DEFINE_boolean, "overwrite", False, "Replace an existing, non-empty --output_dir.")
_define(flags.DEFINE_integer, "verbose", 1, "0 silent, otherwise progress bars.")


def check_flags():
    """Checks the flags that need no files; returns the format tuple."""
    formats = export.check_formats(FLAGS.formats, "--formats")
    if not formats:
        raise ValueError(f"--formats: give at least one of {', '.join(export.FORMATS)}")
    if not FLAGS.model:
        raise ValueError("--model is required: the .keras file to export")
    if not FLAGS.output_dir:
        raise ValueError("--output_dir is required: the folder to write the export to")
    for name in ("representative_samples", "latency_calls", "throughput_batch_size",
                 "num_threads"):
        if FLAGS[name].value < 1:
            raise ValueError(f"--{name} must be an integer >= 1, got {FLAGS[name].value}")
    return formats


def load_model():
    """Loads --model and checks that its input shape is fixed."""
    model = teachers.load_model(FLAGS.model, "--model")
    export.example_shape(model, f"--model {FLAGS.model}")
    return model


def check_model(model, bundle):
    """The model must take the data set's examples and predict its classes."""
    shape = export.example_shape(model)
    if shape != tuple(bundle.input_shape):
        raise ValueError(f"--model {FLAGS.model} takes examples of shape {shape} but "
                         f"--dataset {FLAGS.dataset} has examples of shape {bundle.input_shape}")
    if model.output_shape[-1] != bundle.num_classes:
        raise ValueError(f"--model {FLAGS.model} outputs {model.output_shape[-1]} logits but "
                         f"--dataset {FLAGS.dataset} has {bundle.num_classes} classes")


def print_summary(report, output_dir):
    print(f"\ntfkd export of {FLAGS.model} to {output_dir} "
          f"({report['test_examples']} test examples)")
    print(f"  {'keras':<16}accuracy {report['keras']['accuracy']:.4f}")
    for name, entry in report["formats"].items():
        print(f"  {name:<16}accuracy {entry['accuracy']:.4f}   agreement "
              f"{100 * entry['agreement']:.2f}%   {entry['size_bytes']:>10,} bytes   "
              f"{entry['latency_ms_median']:.3f} ms")
    for name, goal in report["goals"].items():
        print(f"  goal {name}: {goal['value']:.4f} ({goal['target']}) "
              f"{'met' if goal['met'] else 'NOT met'}")


def run():
    """Runs the export from parsed flags; returns the report dictionary."""
    formats = check_flags()
    common.check_output_dir(FLAGS.output_dir, FLAGS.overwrite)
    model = load_model()
    bundle = data.load(tfkd_flags.data_config())
    check_model(model, bundle)
    report_options = {"latency_calls": FLAGS.latency_calls,
                      "batch_size": FLAGS.throughput_batch_size,
                      "num_threads": FLAGS.num_threads}
    with common.staging_dir(FLAGS.output_dir) as work_dir:
        exports = export.export_student(
            model, work_dir, formats, test_data=bundle.test, verbose=FLAGS.verbose > 0,
            train_images=bundle.train[0], int8_io=FLAGS.int8_io,
            representative_samples=FLAGS.representative_samples, seed=FLAGS.seed,
            report_options=report_options)
        with open(os.path.join(work_dir, exports["report"])) as handle:
            report = json.load(handle)
    print_summary(report, FLAGS.output_dir)
    return report


def main(argv):
    common.no_positional_arguments(argv)
    run()


def entry():
    common.app_run(main)
