#!/bin/sh
# Trains the teachers of docs/multi_teacher/README.md once (data seed 0); the runs reuse them by
# path. Each call trains one teacher (saved as teacher_0.keras) and a throw-away 1-epoch student.
# Usage: docs/multi_teacher/make_teachers.sh [strong medium weak poor]
set -e
cd "$(dirname "$0")/../.."
# $PYTHON (default python3) runs bin/distill; $FASHION_MNIST is the folder of the Fashion-MNIST
# idx files (default: where Debian's dataset-fashion-mnist package puts them).
PYTHON=${PYTHON:-python3}
FASHION_MNIST=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
OUT=${OUT:-savedmodels/multi_teacher}
DATA="--dataset=idx:$FASHION_MNIST --test_limit=2000 --seed=0"
COMMON="--method=aver --student=cnn_small --epochs=1 --export=keras --verbose=2 --overwrite"
teacher() {  # name arch epochs train_limit [flags]
  name=$1 arch=$2 epochs=$3 limit=$4
  shift 4
  nice -n 10 "$PYTHON" bin/distill $DATA $COMMON --train_limit=$limit --teachers=$arch \
    --teacher_epochs=$epochs --output_dir=$OUT/teacher_$name "$@"
}
for which in ${@:-strong medium weak poor}; do
  case $which in
    strong) teacher strong resnet8 8 5000 ;;    # deep, fully trained (SGD 0.05, cosine)
    medium) teacher medium resnet8 2 5000 ;;    # same depth, short training
    weak) teacher weak cnn_small 1 5000 ;;      # shallow, one epoch: poor but unsure
    # Memorises 100 examples with Adam: poor and over-confident.
    poor) teacher poor resnet8 60 100 --optimizer=adam --learning_rate=0.003 \
            --batch_size=25 --weight_decay=0 ;;
  esac
done
