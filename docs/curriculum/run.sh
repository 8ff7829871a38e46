#!/bin/bash
# Student alone, KD, KD-CL, KD-CL', KD-CL-SR, KD-CL'-SR on a Fashion-MNIST subset, 3 seeds,
# plus pacing and random-order controls. A run whose results.json exists is skipped.
# Usage: docs/curriculum/run.sh [OUT_DIR]   (OUT_DIR relative to the repository root; default
# savedmodels/curriculum). $PYTHON (default python3) runs bin/distill; $FASHION_MNIST is the folder
# of the Fashion-MNIST idx files (default: where Debian's dataset-fashion-mnist package puts them).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-savedmodels/curriculum}
PYTHON=${PYTHON:-python3}
FASHION_MNIST=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
DATA="--dataset=idx:$FASHION_MNIST --validation_fraction=0"
mkdir -p "$OUT"

# Teacher: cnn_large, 1 epoch on all 60000 training images (so it has seen every subset below).
if [ ! -f "$OUT/teacher/teacher.keras" ]; then
  "$PYTHON" bin/distill $DATA --teacher=cnn_large --teacher_epochs=1 --student=cnn_small --epochs=1 \
    --export=keras --verbose=2 --output_dir="$OUT/teacher" --overwrite
fi

COMMON="$DATA --train_limit=5000 --test_limit=2000 --teacher=$OUT/teacher/teacher.keras
  --student=cnn_small --epochs=10 --batch_size=128 --optimizer=sgd --learning_rate=0.05
  --lr_schedule=cosine --temperature=4 --export=keras --verbose=2 --overwrite"
run() {  # run NAME SEED FLAGS...
  local name=$1 seed=$2; shift 2
  [ -f "$OUT/$name-$seed/results.json" ] && return 0
  "$PYTHON" bin/distill $COMMON --seed=$seed "$@" --output_dir="$OUT/$name-$seed"
}
KD="--method=kd --alpha=0.5"
SR="--method=kd_sr"
PACED="--pacing=linear --pacing_start=0.2 --pacing_epochs=5"
for seed in 0 1 2; do
  run kd $seed $KD --baseline      # KD and, with --baseline, the student alone
  run kd_cl $seed $KD --curriculum=teacher
  run kd_cli $seed $KD --curriculum=inverse
  run kd_cl_sr $seed $SR --curriculum=teacher
  run kd_cli_sr $seed $SR --curriculum=inverse
done
# Pacing (not in the paper): the easiest 20% at first, the whole set from epoch 5 (linear).
for seed in 0 1 2; do
  run kd_cl_paced $seed $KD --curriculum=teacher $PACED
  run kd_cl_sr_paced $seed $SR --curriculum=teacher $PACED
done
# Controls: a fixed random order (no teacher difficulty), unpaced and paced.
for seed in 0 1 2; do
  run kd_random $seed $KD --curriculum=random
  run kd_random_paced $seed $KD --curriculum=random $PACED
done
# Control for selective reliance: the same curriculum with a constant KD weight equal to kd_sr's
# mean lambda on it (0.174, read from kd_cl_sr-*/history.csv).
for seed in 0 1 2; do
  run kd_cl_alpha $seed --method=kd --alpha=0.174 --curriculum=teacher
done
