#!/usr/bin/env bash
# Hinton KD on Fashion-MNIST, three teacher -> student pairs, seeds 0-2: the student distilled
# from cached outputs of a committed teacher (docs/teachers/) and the same student alone, with
# configs/fashion_mnist.flags' schedule (5,000-image stratified subset, 30 epochs, T = 4,
# alpha = 0.9). Each run's results.json, history.csv and baseline.csv are copied to
# docs/hinton/runs/<pair>-seed<S>/; summarize.py writes results.json, table.md and curve.png.
#   bash docs/teachers/run.sh   # first, once
#   bash docs/hinton/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
for seed in 0 1 2; do
  for pair in cnn_large:resnet8 resnet20:resnet8 cnn_large:cnn_small; do
    teacher=${pair%%:*}; student=${pair##*:}
    name=$teacher-$student-seed$seed
    out=savedmodels/hinton/$name
    # One student-alone run per student and seed: the pairs sharing a student share it.
    baseline=--baseline
    [ "$pair" = resnet20:resnet8 ] && baseline=--nobaseline
    [ -f $out/results.json ] || bin/distill --flagfile=configs/fashion_mnist.flags \
      --teacher=docs/teachers/$teacher.keras --student=$student --seed=$seed $baseline \
      --export=keras --output_dir=$out
    mkdir -p docs/hinton/runs/$name
    cp $out/results.json $out/history.csv docs/hinton/runs/$name/
    [ ! -f $out/baseline.csv ] || cp $out/baseline.csv docs/hinton/runs/$name/
  done
done
python3 docs/hinton/summarize.py
