#!/usr/bin/env bash
# Fashion-MNIST comparison of dkd, dist and fitnet against kd and the student trained alone.
# Every run: cnn_small student, stratified 3000-image training subset (3000 validation), 6 epochs, batch 32,
# adam 0.003 with a cosine schedule, --deterministic, seeds 0, 1, 2.
# Teacher: savedmodels/fashion_mnist-teacher/teacher.keras, trained by
#   bin/distill --flagfile=configs/fashion_mnist_teacher.flags
# Outputs: savedmodels/methods/<method>-seed<seed>/results.json; finished runs are skipped.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
FASHION_MNIST=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
TEACHER=${TEACHER:-savedmodels/fashion_mnist-teacher/teacher.keras}
OUT=savedmodels/methods
SEEDS=${SEEDS:-"0 1 2"}
METHODS=${METHODS:-"fitnet dkd dist kd alone"}

COMMON=(
  --dataset="idx:$FASHION_MNIST"
  --validation_fraction=0.05
  --train_limit=3000
  --teacher="$TEACHER"
  --student=cnn_small
  --epochs=6
  --batch_size=32
  --optimizer=adam
  --learning_rate=0.003
  --lr_schedule=cosine
  --weight_decay=0
  --deterministic
  --export=keras
  --verbose=0
)

method_flags() {
  case "$1" in
    kd) echo --flagfile=configs/methods/kd.flags --teacher_cache=memory ;;
    # The flagfile's 20 warm-up epochs would outlast the 6-epoch schedule.
    dkd) echo --flagfile=configs/methods/dkd.flags --dkd_warmup_epochs=1 --teacher_cache=memory ;;
    dist) echo --flagfile=configs/methods/dist.flags --teacher_cache=memory ;;
    # The hint needs the teacher's features on every batch, so no cache.
    fitnet) echo --flagfile=configs/methods/fitnet.flags --teacher_cache=none ;;
    # The student alone: cross-entropy against one-hot labels, the teacher unused.
    alone) echo --method=ls --epsilon=0 ;;
    *) echo "unknown method $1" >&2; return 1 ;;
  esac
}

mkdir -p "$OUT"
for seed in $SEEDS; do
  for method in $METHODS; do
    dir="$OUT/$method-seed$seed"
    if [[ -f "$dir/results.json" ]]; then
      echo "$(date -u +%H:%M:%S) skip $dir (done)"
      continue
    fi
    echo "$(date -u +%H:%M:%S) start $dir"
    # shellcheck disable=SC2046
    "$PYTHON" bin/distill "${COMMON[@]}" $(method_flags "$method") \
      --seed="$seed" --output_dir="$dir"
  done
done
echo "$(date -u +%H:%M:%S) all runs done"
