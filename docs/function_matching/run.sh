#!/bin/sh
# The function-matching experiment on a Fashion-MNIST subset (see README.md in this folder).
#   sh docs/function_matching/run.sh [RUNS_DIR] [TEACHER_OUTPUT_DIR]
# Folders are relative to the repository root (defaults savedmodels/function_matching/runs and
# savedmodels/function_matching/teacher_run). $PYTHON (default python3) runs the tools;
# $FASHION_MNIST is the folder of the Fashion-MNIST idx files (default: where Debian's
# dataset-fashion-mnist package puts them).
# Step 1 trains the cnn_large teacher once; every student run reuses it with --teacher=PATH.
set -e
cd "$(dirname "$0")/../.."
RUNS=${1:-savedmodels/function_matching/runs}
TEACHER_DIR=${2:-savedmodels/function_matching/teacher_run}
PYTHON=${PYTHON:-python3}
FASHION_MNIST=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
export FASHION_MNIST
DATA="--dataset=idx:$FASHION_MNIST --train_limit=5000 --test_limit=2000 \
--validation_fraction=0 --seed=0"
if [ ! -f "$TEACHER_DIR/teacher.keras" ]; then
  nice -n 10 "$PYTHON" bin/distill $DATA --teacher=cnn_large --teacher_epochs=30 --augment \
    --student=cnn_small --epochs=1 --export=keras --output_dir="$TEACHER_DIR" --overwrite
fi
COMMON="$DATA --teacher=$TEACHER_DIR/teacher.keras --student=cnn_small --optimizer=sgd \
--learning_rate=0.05 --lr_schedule=cosine --warmup_epochs=1 --batch_size=128 --export=keras \
--verbose=2 --overwrite --crop_min_scale=0.25"
mkdir -p "$RUNS"
run() { name=$1; shift; nice -n 10 "$PYTHON" bin/distill $COMMON --output_dir="$RUNS/$name" "$@" \
  > "$RUNS/$name.log" 2>&1; }
run patience-function_matching --teaching=function_matching --epochs=60 --test_every=3 &
( run modes-none --epochs=20 --test_every=2 --baseline
  run modes-fixed --teaching=fixed --epochs=20 --test_every=2
  run patience-fixed --teaching=fixed --epochs=60 --test_every=3
  run schedule-function_matching-5 --teaching=function_matching --epochs=5 --test_every=1 ) &
( run modes-independent --teaching=independent --epochs=20 --test_every=2
  run modes-consistent --teaching=consistent --epochs=20 --test_every=2
  run modes-function_matching --teaching=function_matching --epochs=20 --test_every=2 ) &
wait
"$PYTHON" docs/function_matching/plot.py "$RUNS"
"$PYTHON" docs/function_matching/summarize.py
"$PYTHON" docs/function_matching/views.py
