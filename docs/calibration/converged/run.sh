#!/usr/bin/env bash
# The calibration ladder with the committed, converged Fashion-MNIST teachers (docs/teachers/,
# smallest first), uncalibrated and calibrated in both --calibration_modes, 3 seeds, from cached
# teacher outputs, each with the student alone (--baseline) on the same data and schedule:
#   cnn_small student: configs/fashion_mnist.flags' schedule (5,000-image stratified subset,
#     30 epochs, T = 4, alpha = 0.9), all four teachers. resnet56 was trained after the other
#     three, so its row is a second bin/ladder call with the same settings (same splits, seeds);
#     a third call repeats two teachers at T = 1.
#   resnet8 student: docs/retests' schedule (2,000-image stratified subset, 30 epochs,
#     mixed_bfloat16), all four teachers; resnet56's row came first, the other three are a
#     second bin/ladder call with the same settings.
# Both keep --validation_fraction=0.1 with seed 0: the teachers' own validation split, so T* is
# fitted on 6,000 images no teacher trained on (a smaller fraction draws its validation images
# mostly from the teachers' training images).
# Copies each ladder's ladder.json, ladder.md, ladder.png and its students' history.csv
# (<prefix>histories/<teacher>/<mode>/seed_<k>/) here, then runs summarize.py.
#   bash docs/teachers/run.sh   # first, once
#   bash docs/calibration/converged/run.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
FASHION_MNIST=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
HERE=docs/calibration/converged
T=docs/teachers
COMMON=(--dataset=idx:"$FASHION_MNIST" --teacher_cache=memory --method=kd --temperature=4
        --alpha=0.9 --epochs=30 --batch_size=128 --optimizer=adam --learning_rate=0.003
        --lr_schedule=cosine --weight_decay=0 --deterministic --ladder_seeds=3 --export=keras)
# configs/fashion_mnist.flags' settings but --teacher (bin/ladder sets it) and the exports.
CNN_SMALL=(--validation_fraction=0.1 --train_limit=5000 --student=cnn_small)
RESNET8=(--validation_fraction=0.1 --train_limit=2000 --student=resnet8
         --precision=mixed_bfloat16)
ladder() {  # ladder OUTPUT_DIR COPY_PREFIX FLAGS...
  local out=$1 prefix=$2; shift 2
  [ -f "$out/ladder.json" ] || bin/ladder "${COMMON[@]}" "$@" --output_dir="$out"
  for f in ladder.json ladder.md ladder.png; do cp "$out/$f" "$HERE/$prefix$f"; done
  local csv keep
  for csv in "$out"/students/*/*/seed_*/history.csv; do  # each student's epochs
    [ -f "$csv" ] || continue
    keep=$HERE/${prefix}histories/${csv#"$out"/students/}
    mkdir -p "$(dirname "$keep")" && cp "$csv" "$keep"
  done
}
ladder savedmodels/ladder-converged "" "${CNN_SMALL[@]}" --baseline \
  --ladder_teachers=$T/resnet8.keras,$T/resnet20.keras,$T/cnn_large.keras
ladder savedmodels/ladder-converged-resnet56 resnet56_ "${CNN_SMALL[@]}" \
  --ladder_teachers=$T/resnet56.keras
# cnn_small at T = 1, uncalibrated and scale (whose target is then replace's softmax(z / T*)),
# from the smallest and the largest teacher: does replace win by calibrating or by lowering T?
ladder savedmodels/ladder-converged-t1 cnn_small_t1_ "${CNN_SMALL[@]}" --temperature=1 \
  --ladder_modes=scale --ladder_teachers=$T/resnet8.keras,$T/resnet56.keras
mkdir -p $HERE/resnet8
ladder savedmodels/ladder-converged-resnet8 resnet8/ "${RESNET8[@]}" --baseline \
  --ladder_teachers=$T/resnet56.keras
ladder savedmodels/ladder-converged-resnet8-others resnet8/others_ "${RESNET8[@]}" \
  --ladder_teachers=$T/resnet8.keras,$T/resnet20.keras,$T/cnn_large.keras
python3 $HERE/summarize.py
