#!/usr/bin/env bash
# The calibration ladder with the committed, converged Fashion-MNIST teachers (docs/teachers/,
# smallest first): a cnn_small student distilled from each, uncalibrated and calibrated in both
# --calibration_modes, 3 seeds, from cached teacher outputs, with configs/fashion_mnist.flags'
# schedule (5,000-image stratified subset, 30 epochs, T = 4, alpha = 0.9), and the student
# alone (--baseline). Copies ladder.json, ladder.md and ladder.png here.
#   bash docs/teachers/run.sh   # first, once
#   bash docs/calibration/converged/run.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=savedmodels/ladder-converged
# configs/fashion_mnist.flags' settings but --teacher (bin/ladder sets it) and the exports.
[ -f $out/ladder.json ] || bin/ladder --dataset=idx:/usr/share/datasets/fashion-mnist \
  --validation_fraction=0.1 --train_limit=5000 --teacher_cache=memory --student=cnn_small \
  --method=kd --temperature=4 --alpha=0.9 --epochs=30 --batch_size=128 --optimizer=adam \
  --learning_rate=0.003 --lr_schedule=cosine --weight_decay=0 --baseline --deterministic \
  --ladder_teachers=docs/teachers/resnet8.keras,docs/teachers/resnet20.keras,docs/teachers/cnn_large.keras \
  --ladder_seeds=3 --export=keras --output_dir=$out
cp $out/ladder.json $out/ladder.md $out/ladder.png docs/calibration/converged/
python3 docs/calibration/converged/summarize.py
