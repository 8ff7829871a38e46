#!/bin/sh
# Augmentation replay (FKD) against online function matching on a Fashion-MNIST subset
# (see README.md in this folder).
#   sh docs/replay/run.sh [RUNS_DIR]
# RUNS_DIR is relative to the repository root (default savedmodels/replay). $PYTHON (default
# python3) runs the tools; $FASHION_MNIST is the folder of the Fashion-MNIST idx files;
# $TEACHER is the trained cnn_large teacher of configs/fashion_mnist_teacher.flags;
# $SEEDS the seeds (each seed draws its own training subset, views and initialisation).
set -e
cd "$(dirname "$0")/../.."
RUNS=${1:-savedmodels/replay}
PYTHON=${PYTHON:-python3}
FASHION_MNIST=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
TEACHER=${TEACHER:-savedmodels/fashion_mnist-teacher/teacher.keras}
SEEDS=${SEEDS:-0 1 2}
EPOCHS=${EPOCHS:-20}
if [ ! -f "$TEACHER" ]; then
  "$PYTHON" bin/distill --flagfile=configs/fashion_mnist_teacher.flags \
    --dataset="idx:$FASHION_MNIST"
fi
COMMON="--dataset=idx:$FASHION_MNIST --train_limit=2000 --test_limit=2000 \
--validation_fraction=0 --teacher=$TEACHER --student=cnn_small --method=kd --temperature=4 \
--optimizer=adam --learning_rate=0.003 --lr_schedule=cosine --batch_size=64 \
--crop_min_scale=0.25 --epochs=$EPOCHS --deterministic --export=keras --verbose=0 --overwrite"
mkdir -p "$RUNS/cache"
# Every run's process CPU time (user, system) and wall time go to NAME.time next to its folder.
run() { name=$1; seed=$2; shift 2
  nice -n 10 /usr/bin/time -o "$RUNS/$name-seed$seed.time" -f "%U %S %e" \
    "$PYTHON" bin/distill $COMMON --seed="$seed" --output_dir="$RUNS/$name-seed$seed" "$@" \
    > "$RUNS/$name-seed$seed.log" 2>&1; }
# One cache folder per experiment: replay entries are keyed by teacher, images and recipe.
REPLAY="--teaching=function_matching --teacher_cache=replay --cache_dir=$RUNS/cache"
for seed in $SEEDS; do
  run online_fm "$seed" --teaching=function_matching
  run replay_r1_k5 "$seed" $REPLAY --replay_views=1 --replay_topk=5
  run replay_r4_k5 "$seed" $REPLAY --replay_views=4 --replay_topk=5
  run replay_r10_k5 "$seed" $REPLAY --replay_views=10 --replay_topk=5
  run replay_r10_k10 "$seed" $REPLAY --replay_views=10 --replay_topk=10
  run fixed "$seed" --teaching=fixed
done
# Patience: the online/replay pair at 60 epochs (each stored view replayed about 6 times), on
# $PATIENCE_SEEDS (default 0 1; the replay entry of a seed run above is reused). PATIENCE=0 skips.
if [ "${PATIENCE:-1}" = 1 ]; then
  COMMON=$(echo "$COMMON" | sed 's/--epochs=[0-9]*/--epochs=60/')
  for seed in ${PATIENCE_SEEDS:-0 1}; do
    run patience60_online_fm "$seed" --teaching=function_matching &
    run patience60_replay_r10_k10 "$seed" $REPLAY --replay_views=10 --replay_topk=10 &
    wait
  done
fi
"$PYTHON" docs/replay/summarize.py "$RUNS"
