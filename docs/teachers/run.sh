#!/usr/bin/env bash
# Fashion-MNIST teachers at four sizes, each trained once on the 54,000 training images (the
# other 6,000 held out for validation) with configs/fashion_mnist_teacher.flags, then
# temperature-scaled on the validation split and measured on the 10,000 test images.
# Writes docs/teachers/<arch>/ (calibration.json, reliability diagrams, teacher.csv),
# docs/teachers/<arch>.keras and docs/teachers/teachers.json. Run from anywhere:
#   bash docs/teachers/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=idx:/usr/share/datasets/fashion-mnist
for arch in resnet8 resnet20 cnn_large resnet56; do
  out=savedmodels/teachers/$arch
  if [ "$arch" = cnn_large ]; then
    out=savedmodels/fashion_mnist-teacher  # the README recipe's teacher: the flagfile unchanged
    [ -f $out/teacher.keras ] || bin/distill --flagfile=configs/fashion_mnist_teacher.flags
  else
    [ -f $out/teacher.keras ] || bin/distill --flagfile=configs/fashion_mnist_teacher.flags \
      --teacher=$arch --output_dir=$out
  fi
  # What is already here is kept: a re-run only adds the teachers that are missing.
  [ -f docs/teachers/$arch/calibration.json ] || bin/calibrate --model=$out/teacher.keras \
    --dataset=$DATA --validation_fraction=0.1 --report_dir=docs/teachers/$arch
  # Weights only, without the optimizer state: a third of the size.
  [ -f docs/teachers/$arch.keras ] || python3 -c \
    "import sys, keras; keras.saving.load_model(sys.argv[1], compile=False).save(sys.argv[2])" \
    $out/teacher.keras docs/teachers/$arch.keras
  cp $out/teacher.csv docs/teachers/$arch/teacher.csv
  cp $out/results.json docs/teachers/$arch/results.json
done
python3 docs/teachers/summarize.py
