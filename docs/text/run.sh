#!/usr/bin/env bash
# configs/text.flags on 3 seeds: a BERT-Tiny teacher trained on a generated text corpus
# (text_synthetic), a text CNN student distilled from it, and the same student trained alone
# (--baseline), each on the same seeded data. The seed draws the corpus, the splits and the
# initial weights. Runs go to $OUT (default savedmodels/text); a seed whose results.json is
# already under docs/text/runs/ is skipped, so the script resumes. $SEEDS: the seeds (0 1 2).
#   bash docs/text/run.sh [FLAGS...]   # with tfkd installed; FLAGS go to every bin/distill call
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-savedmodels/text}
SEEDS=${SEEDS:-0 1 2}
for seed in $SEEDS; do
  keep=docs/text/runs/seed$seed dir=$OUT/seed$seed
  [[ ! -f $keep/results.json ]] || continue
  if [[ ! -f $dir/results.json ]]; then
    echo "== seed $seed"
    mkdir -p "$OUT"
    bin/distill --flagfile=configs/text.flags --seed="$seed" --output_dir="$dir" --overwrite \
      --verbose=2 "$@" > "$dir.log" 2>&1 || { echo "   FAILED, see $dir.log"; continue; }
  fi
  mkdir -p "$keep"
  cp "$dir/results.json" "$dir/history.csv" "$dir/baseline.csv" "$dir/teacher.csv" \
    "$dir/export_report.json" "$keep/"
done
python3 docs/text/summarize.py
