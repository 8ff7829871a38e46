"""Derives the comparisons quoted in README.md from the committed export reports.

    python docs/export/summarize.py

Reads <model>/export_report.json and the train_results.json files (for parameter counts) in this
folder and writes summary.json: changed predictions, accuracy differences in images, the largest
int8 logit error in output quantisation steps, the file-size overheads and the parameter count at
which the int8 size target would be met under a linear size model, and latency ratios from the
one committed report per model.
"""

import json
import math
import os

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE_TARGET = 0.3  # int8 file <= 0.3 x float32 file, the report's int8_size_ratio goal


def load(*parts):
    with open(os.path.join(HERE, *parts)) as handle:
        return json.load(handle)


def parameters():
    shared = load("train_results.json")
    resnet = load("resnet20", "train_results.json")
    return {
        "cnn_small": shared["student"]["params"],
        "cnn_large": shared["teacher"]["params"],
        "resnet20": resnet["student"]["params"],
    }


def model_summary(report, params):
    formats, keras = report["formats"], report["keras"]
    tests = report["test_examples"]
    float32, int8 = formats["tflite"], formats["tflite_int8"]
    # Linear size model: file = overhead + bytes per weight x params; float32 stores 4 bytes per
    # weight, int8 one. The overheads (graph, tensor metadata, quantisation parameters) follow.
    float_overhead = float32["size_bytes"] - 4 * params
    int8_overhead = int8["size_bytes"] - params
    # int8_overhead + P <= SIZE_TARGET (float_overhead + 4 P)  <=>  P >= ... (when 1 > 4 x target)
    threshold = (int8_overhead - SIZE_TARGET * float_overhead) / (4 * SIZE_TARGET - 1)
    return {
        "params": params,
        "keras_accuracy": keras["accuracy"],
        "changed_predictions_pct": {
            name: round(100 * (1 - entry["agreement"]), 2) for name, entry in formats.items()
        },
        "int8_minus_keras_accuracy_points": round(100 * (int8["accuracy"] - keras["accuracy"]), 2),
        "int8_minus_keras_accuracy_images": round(tests * (int8["accuracy"] - keras["accuracy"])),
        "int8_max_logit_error_output_steps": round(
            int8["max_abs_logit_diff"] / int8["output"]["scale"], 1
        ),
        "int8_mean_logit_error": round(int8["mean_abs_logit_diff"], 3),
        "float32_weight_bytes": 4 * params,
        "float32_file_overhead_bytes": float_overhead,
        "int8_file_overhead_bytes": int8_overhead,
        "int8_size_ratio": round(int8["size_ratio"], 3),
        "params_for_int8_size_target_linear_model": (math.ceil(threshold) if threshold > 0 else 0),
        "latency_ms": {
            "keras_tf_function": round(keras["latency_ms_median"], 3),
            **{name: round(entry["latency_ms_median"], 3) for name, entry in formats.items()},
        },
        "keras_over_tflite_latency": round(
            keras["latency_ms_median"] / float32["latency_ms_median"], 1
        ),
        "tflite_over_int8_latency": round(
            float32["latency_ms_median"] / int8["latency_ms_median"], 1
        ),
        "tflite_over_dynamic_latency": round(
            float32["latency_ms_median"] / formats["tflite_dynamic"]["latency_ms_median"], 1
        ),
        "tflite_batch_throughput_below_one_over_latency": (
            float32["throughput_per_s"] < 1000 / float32["latency_ms_median"]
        ),
    }


def main():
    params = parameters()
    summary = {
        "sources": ["*/export_report.json", "train_results.json", "resnet20/train_results.json"],
        "note": "one report per model; latencies are single medians on a shared machine",
        "models": {
            name: model_summary(load(name, "export_report.json"), params[name])
            for name in ("cnn_small", "cnn_large", "resnet20")
        },
    }
    with open(os.path.join(HERE, "summary.json"), "w") as handle:
        json.dump(summary, handle, indent=1)
        handle.write("\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
