#!/usr/bin/env bash
# Accuracy of a student trained with --precision=mixed_bfloat16 against float32: the README's
# Fashion-MNIST recipe (configs/fashion_mnist.flags: resnet8 distilled from the committed
# cnn_large teacher on 5,000 images, 30 epochs, seed 0) distilled both ways, without the
# student-alone run. Writes docs/benchmarks/student_precision.json. Speed: bin/bench's
# plain_fit_mixed_bfloat16 and cached_kd_mixed_bfloat16 variants (throughput.json).
#   bash docs/benchmarks/student_precision.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
for precision in float32 mixed_bfloat16; do
  out=savedmodels/precision/$precision
  [ -f $out/results.json ] || bin/distill --flagfile=configs/fashion_mnist.flags \
    --teacher=docs/teachers/cnn_large.keras --nobaseline --export=keras,tflite \
    --precision=$precision --output_dir=$out
done
python3 - <<'PY'
import json
runs = {p: json.load(open(f"savedmodels/precision/{p}/results.json"))
        for p in ("float32", "mixed_bfloat16")}
report = {"command": "bash docs/benchmarks/student_precision.sh",
          "sizes": {"student": "resnet8", "teacher": "cnn_large", "train_examples": 5000,
                    "epochs": 30, "seed": 0, "test_examples": 10000},
          "test_accuracy": {p: r["student"]["accuracy"] for p, r in runs.items()},
          "tflite_accuracy": {p: r["exports"].get("tflite_accuracy") for p, r in runs.items()},
          "distill_seconds_wall": {p: r["seconds"]["distill"] for p, r in runs.items()}}
report["accuracy_difference_points"] = round(100 * (report["test_accuracy"]["mixed_bfloat16"]
                                              - report["test_accuracy"]["float32"]), 4)
json.dump(report, open("docs/benchmarks/student_precision.json", "w"), indent=2)
print(json.dumps(report, indent=2))
PY
