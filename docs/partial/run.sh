#!/usr/bin/env bash
# Runs the partial-distillation experiments of docs/partial/README.md and builds the tables.
#   docs/partial/run.sh synthetic|fashion|analysis|tables|all   (from the repository root)
# Run outputs (models, results.json) go to $OUT (default savedmodels/partial under the repository
# root); a run whose results.json exists is skipped, so the script resumes after an interruption.
# $PYTHON (default python3) runs the tools; $FASHION_MNIST is the folder of the Fashion-MNIST idx
# files (default: where Debian's dataset-fashion-mnist package puts them).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-savedmodels/partial}
PYTHON=${PYTHON:-python3}
FASHION_MNIST=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
DISTILL=(nice -n 10 "$PYTHON" bin/distill --verbose=0 --export=keras --overwrite)

run() {  # run OUTPUT_DIR FLAGS...: one bin/distill job unless it already finished
  local dir=$1; shift
  if [[ -f $dir/results.json ]]; then return; fi
  echo "== $dir"
  "${DISTILL[@]}" --output_dir="$dir" "$@"
}

# Section 5.1: 20 classes in 4 super-classes, 3 class similarities, 3 seeds (each seed draws a
# new data set and new initialisations). The KD run trains the teacher (mlp_large) and the
# student alone (mlp); KD-pt and KD-sim load that teacher. All teachers are trained first.
SYNTHETIC=(--dataset=synthetic --synthetic_size=50000 --synthetic_dim=20 --synthetic_classes=20
           --synthetic_superclasses=4 --difficulty=2 --validation_fraction=0.1
           --student=mlp --epochs=10 --batch_size=128 --optimizer=adam
           --learning_rate=0.002 --lr_schedule=cosine --weight_decay=0
           --temperature=4 --alpha=0.9)
SIMILARITIES=(0.0 0.5 0.9)
synthetic() {
  for similarity in "${SIMILARITIES[@]}"; do
    for seed in 0 1 2; do
      run "$OUT/synthetic/sim$similarity/seed$seed/kd" "${SYNTHETIC[@]}" \
        --class_similarity=$similarity --seed=$seed --method=kd --teacher=mlp_large \
        --teacher_epochs=20 --baseline
    done
  done
  for similarity in "${SIMILARITIES[@]}"; do
    for seed in 0 1 2; do
      local dir=$OUT/synthetic/sim$similarity/seed$seed
      local flags=("${SYNTHETIC[@]}" --class_similarity=$similarity --seed=$seed
                   --teacher="$dir/kd/teacher.keras")
      run "$dir/kd_pt" "${flags[@]}" --method=kd_pt
      run "$dir/kd_sim" "${flags[@]}" --method=kd_sim
    done
  done
}

# Section 5.2 on Fashion-MNIST: one cnn_large teacher, trained once (seed 0, 5000 examples) by a
# run whose own student is not used, then loaded by every student run. Students see a 2000
# example subset (drawn by their seed) for 25 epochs of batch 64, validated on 1200 examples.
FASHION_DATA=(--dataset=idx:"$FASHION_MNIST" --test_limit=2000)
FASHION=("${FASHION_DATA[@]}" --validation_fraction=0.02 --train_limit=2000 --student=cnn_small
         --epochs=25 --batch_size=64
         --optimizer=adam --learning_rate=0.005 --lr_schedule=cosine --weight_decay=0
         --temperature=4 --alpha=0.9)
fashion() {
  local teacher=$OUT/fashion/teacher/teacher.keras
  run "$OUT/fashion/teacher" "${FASHION_DATA[@]}" --validation_fraction=0.1 --train_limit=5000 \
    --seed=0 --method=kd \
    --teacher=cnn_large \
    --teacher_epochs=10 --student=cnn_small --epochs=8 --batch_size=128 --optimizer=adam \
    --learning_rate=0.002 --lr_schedule=cosine --weight_decay=0 --temperature=4 --alpha=0.9 \
    --baseline
  for seed in 0 1 2; do
    local dir=$OUT/fashion/seed$seed
    run "$dir/kd" "${FASHION[@]}" --seed=$seed --method=kd --teacher="$teacher" --baseline
    run "$dir/ls" "${FASHION[@]}" --seed=$seed --method=ls --epsilon=0.1
    for method in kd_pt kd_sim kd_pt_sim kd_topk; do
      run "$dir/$method" "${FASHION[@]}" --seed=$seed --method=$method --teacher="$teacher"
    done
    run "$dir/kd_rel" "${FASHION[@]}" --seed=$seed --method=kd_rel \
      --superclass_map=docs/partial/fashion_mnist_superclasses.json
  done
}

# Figs. 1 and 2 for the seed-0 teachers and KD students (training examples, T = 4, alpha = 0.9).
analysis() {
  local analyze=(nice -n 10 "$PYTHON" bin/analyze --overwrite --verbose=0 --temperature=4
                 --alpha=0.9 --analysis_temperatures=1,4 --analysis_split=train)
  for similarity in 0.0 0.9; do
    local dir=$OUT/synthetic/sim$similarity/seed0/kd
    "${analyze[@]}" "${SYNTHETIC[@]:0:7}" --class_similarity=$similarity --seed=0 \
      --teacher="$dir/teacher.keras" --student_model="$dir/student.keras" \
      --analysis_examples=5000 --output_dir="$OUT/analysis/synthetic_sim$similarity"
  done
  "${analyze[@]}" "${FASHION_DATA[@]}" --validation_fraction=0.02 --train_limit=2000 --seed=0 \
    --teacher="$OUT/fashion/teacher/teacher.keras" \
    --student_model="$OUT/fashion/seed0/kd/student.keras" \
    --superclass_map=docs/partial/fashion_mnist_superclasses.json --analysis_examples=2000 \
    --output_dir="$OUT/analysis/fashion"
  mkdir -p docs/partial/analysis
  for name in synthetic_sim0.0 synthetic_sim0.9 fashion; do
    for file in class_relationships.png gradient_rescaling.png analysis.json; do
      cp "$OUT/analysis/$name/$file" "docs/partial/analysis/${name}_$file"
    done
  done
}

tables() {
  "$PYTHON" docs/partial/aggregate.py "$OUT" docs/partial
  "$PYTHON" docs/partial/summarize.py
}

case ${1:-all} in
  synthetic) synthetic ;;
  fashion) fashion ;;
  analysis) analysis ;;
  tables) tables ;;
  all) synthetic; fashion; analysis; tables ;;
  *) echo "usage: $0 synthetic|fashion|analysis|tables|all" >&2; exit 2 ;;
esac
