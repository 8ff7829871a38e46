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
PYTHON=${PYTHON:-python3}
case $CONFIG in
  synthetic) DEST=docs/quickstart ;;
  fashion_mnist) DEST=docs/quickstart/fashion_mnist ;;
  *) echo "usage: $0 [synthetic|fashion_mnist] [OUTPUT_DIR]" >&2; exit 2 ;;
esac
"$PYTHON" bin/distill --flagfile=configs/$CONFIG.flags --output_dir="$OUT" --overwrite --verbose=2
mkdir -p "$DEST"
cp "$OUT/results.json" "$OUT/export_report.json" "$DEST/"
