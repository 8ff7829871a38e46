#!/bin/sh
# The runs of docs/multi_teacher/README.md; teachers from make_teachers.sh, reused by path.
# Each run writes $OUT/<case>-<name>-seed<seed>/results.json; summarize.py makes the tables.
cd "$(dirname "$0")/../.."
# $PYTHON (default python3) runs bin/distill; $FASHION_MNIST is the folder of the Fashion-MNIST
# idx files (default: where Debian's dataset-fashion-mnist package puts them).
PYTHON=${PYTHON:-python3}
FASHION_MNIST=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
T=${TEACHERS:-savedmodels/multi_teacher}
OUT=${OUT:-savedmodels/multi_teacher/runs}
DATA="--dataset=idx:$FASHION_MNIST --train_limit=3000 --test_limit=2000"
TRAIN="--student=cnn_small --epochs=6 --optimizer=adam --learning_rate=0.005 --batch_size=128"
MAIN=$T/teacher_strong/teacher_0.keras,$T/teacher_medium/teacher_0.keras,$T/teacher_weak/teacher_0.keras
POOR=$T/teacher_strong/teacher_0.keras,$T/teacher_medium/teacher_0.keras,$T/teacher_poor/teacher_0.keras
run() {  # case name seed flags...
  case=$1 name=$2 seed=$3
  shift 3
  teachers=$MAIN
  [ "$case" = poor ] && teachers=$POOR
  dir=$OUT/$case-$name-seed$seed
  [ -f "$dir/results.json" ] && return 0  # already done
  echo "== $case $name seed $seed"
  nice -n 10 "$PYTHON" bin/distill $DATA $TRAIN --seed=$seed --teachers=$teachers \
    --export=keras --verbose=2 --overwrite --output_dir=$dir "$@" > "$dir.log" 2>&1 \
    || echo "   FAILED, see $dir.log"
}
mkdir -p "$OUT"
for seed in 0 1 2; do
  run main aver $seed --method=aver --baseline   # the baseline is the student alone
  run main ebkd $seed --method=ebkd
  run main fitnet_mkd $seed --method=fitnet_mkd
  run main ca_mkd $seed --method=ca_mkd
  run main ca_mkd_official $seed --method=ca_mkd --official_scaling
  run poor aver $seed --method=aver
  run poor ebkd $seed --method=ebkd
  run poor ca_mkd_logits $seed --method=ca_mkd --ca_mkd_ablation=no_features
  run poor ca_mkd $seed --method=ca_mkd
done
# The authors' code as it is: official scaling and the gradient through w' (one seed).
run main ca_mkd_code 0 --method=ca_mkd --official_scaling --ca_mkd_weight_gradient
# Reference: single-teacher KD (the core method) from the strong teacher alone.
for seed in 0 1 2; do
  run single kd_strong $seed --method=kd --teacher=$T/teacher_strong/teacher_0.keras --alpha=0.5
done
