#!/bin/sh
# Runs the README's quickstart (configs/synthetic.flags) or its Fashion-MNIST example
# (configs/fashion_mnist.flags) and copies the run's results.json and export_report.json here.
#   sh docs/quickstart/run.sh [synthetic|fashion_mnist] [OUTPUT_DIR]
# OUTPUT_DIR is relative to the repository root (default savedmodels/quickstart-<config>);
# $PYTHON (default python3) runs bin/distill.
set -e
cd "$(dirname "$0")/../.."
CONFIG=${1:-synthetic}
OUT=${2:-savedmodels/quickstart-$CONFIG}
[ "$CONFIG" = fashion_mnist ] && OUT=${2:-savedmodels/fashion_mnist-kd}
PYTHON=${PYTHON:-python3}
case $CONFIG in
  synthetic) DEST=docs/quickstart ;;
  fashion_mnist) DEST=docs/quickstart/fashion_mnist ;;
  *) echo "usage: $0 [synthetic|fashion_mnist] [OUTPUT_DIR]" >&2; exit 2 ;;
esac
mkdir -p "$DEST"
if [ "$CONFIG" = fashion_mnist ]; then
  # The teacher first, on the whole training split; the recipe loads it from its output folder.
  "$PYTHON" bin/distill --flagfile=configs/fashion_mnist_teacher.flags --overwrite --verbose=2
  cp savedmodels/fashion_mnist-teacher/results.json "$DEST/teacher_results.json"
fi
"$PYTHON" bin/distill --flagfile=configs/$CONFIG.flags --output_dir="$OUT" --overwrite --verbose=2
cp "$OUT/results.json" "$OUT/export_report.json" "$DEST/"
