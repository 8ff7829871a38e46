#!/usr/bin/env bash
# The causal-LM comparison of docs/lm/RESULTS.md: one gpt_small teacher trained once, then a
# gpt_tiny student per method and seed distilled from it (loaded with --teacher=PATH), the data
# fixed (--data_seed=0) while --seed varies the student's initialisation and batch order.
#
#   nice -n 10 bash docs/lm/compare.sh          # resumable: a run whose results.json exists
#                                               # is skipped; the teacher is trained once
# (a run killed midway leaves savedmodels/lm_compare/<name>-seed<N>.lock: remove it to rerun)
#
# Outputs go under savedmodels/lm_compare/ (git-ignored); each run's results.json and
# history.csv are copied to docs/lm/runs/<name>-seed<N>/. `touch savedmodels/lm_compare/
# teacher/STOP` ends the teacher's training after its current epoch (its last epoch is kept).
# Environment: SEEDS ("0 1 2"), EPOCHS (student epochs, 1), TEACHER_EPOCHS (4), RUNS (names),
# SUFFIX (added to run names, e.g. SUFFIX=_e3 EPOCHS=3 RUNS="fkl k32" for longer students).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=savedmodels/lm_compare
SEEDS=${SEEDS:-"0 1 2"}
EPOCHS=${EPOCHS:-1}
TEACHER_EPOCHS=${TEACHER_EPOCHS:-4}
RUNS=${RUNS:-"fkl rkl jsd onpolicy k8 k32 kV aver"}
export TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 TF_CPP_MIN_LOG_LEVEL=2
COMMON=(--flagfile=docs/lm/stdlib_gpt.flags --data_seed=0 --batch_size=16
        --learning_rate=0.002 --epochs="$EPOCHS" --samples=2)
TEACHER="$OUT/teacher/teacher.keras"
mkdir -p "$OUT/teacher" "$OUT/stores"

# The teacher: gpt_small on the training split's cross-entropy, batch 8, Adam 0.002, saved
# after every epoch, its per-epoch validation loss in teacher/history.csv.
if [ ! -f "$OUT/teacher/DONE" ]; then
  "$PYTHON" - "$OUT/teacher" "$TEACHER_EPOCHS" <<'EOF'
import os, sys, time

import keras

from tfkd.atomic import atomic_path, write_text
from tfkd.lm.distiller import CausalLMDistiller
from tfkd.lm.run import LMRunConfig, build_model, load_data

folder, epochs = sys.argv[1], int(sys.argv[2])
config = LMRunConfig.from_flags(
    ["--flagfile=docs/lm/stdlib_gpt.flags", "--data_seed=0", "--batch_size=8",
     "--learning_rate=0.002", f"--output_dir={folder}"]
)
keras.utils.set_random_seed(0)
data = load_data(config)
teacher = build_model("gpt_small", data, config, seed=1)
trainer = CausalLMDistiller(teacher, None, alpha=0.0)
trainer.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
start = time.process_time()


class SaveAndStop(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        with atomic_path(os.path.join(folder, "teacher.keras"), suffix=".keras") as path:
            teacher.save(path)
        write_text(os.path.join(folder, "cpu_seconds"), f"{time.process_time() - start:.1f}\n")
        if os.path.exists(os.path.join(folder, "STOP")):
            self.model.stop_training = True


trainer.fit(
    data.dataset("train", config.batch_size, shuffle=True, seed=0),
    epochs=epochs,
    validation_data=data.dataset("validation", config.batch_size),
    callbacks=[keras.callbacks.CSVLogger(os.path.join(folder, "history.csv")), SaveAndStop()],
    shuffle=False,
    verbose=0,
)
write_text(os.path.join(folder, "DONE"), "")
EOF
fi

mkdir -p docs/lm/runs/teacher
cp "$OUT/teacher/history.csv" "$OUT/teacher/cpu_seconds" docs/lm/runs/teacher/

flags_of() {
  case "$1" in
    fkl) echo "--divergence=forward_kl --baseline" ;;  # the student alone is this run's baseline
    rkl) echo "--divergence=reverse_kl --nobaseline" ;;
    jsd) echo "--divergence=jsd --jsd_beta=0.5 --nobaseline" ;;
    onpolicy) echo "--divergence=jsd --jsd_beta=0.5 --on_policy_fraction=0.5 --nobaseline" ;;
    k8) echo "--teacher_cache=disk --cache_topk=8 --nobaseline" ;;
    k32) echo "--teacher_cache=disk --cache_topk=32 --nobaseline" ;;
    kV) echo "--teacher_cache=disk --cache_topk=259 --nobaseline" ;;
    # AVER of two live teachers: the loaded gpt_small and a gpt_tiny trained here 2 epochs.
    aver) echo "--method=aver --teachers=$TEACHER,gpt_tiny --teacher_epochs=2 --nobaseline" ;;
    *) echo "unknown run $1" >&2; exit 1 ;;
  esac
}

for seed in $SEEDS; do
  for name in $RUNS; do
    run="$OUT/$name$SUFFIX-seed$seed"
    if [ ! -f "$run/results.json" ]; then
      # Several copies of this script may run at once (e.g. SEEDS="1 2" RUNS="fkl k32" beside
      # the full loop): a run is taken by the first to create its lock.
      mkdir "$run.lock" 2>/dev/null || continue
      mkdir -p "$run"
      # Stores are keyed by teacher, split and k: every seed reads the ones seed 0 built.
      [ -e "$run/store" ] || ln -s ../stores "$run/store"
      # shellcheck disable=SC2046
      "$PYTHON" -m tfkd.lm "${COMMON[@]}" $(flags_of "$name") --teacher="$TEACHER" \
        --seed="$seed" --output_dir="$run" > "$run.log" 2>&1
      rmdir "$run.lock"
    fi
    mkdir -p "docs/lm/runs/$name$SUFFIX-seed$seed"
    cp "$run/results.json" "$run/history.csv" "docs/lm/runs/$name$SUFFIX-seed$seed/"
    if [ -f "$run/baseline.csv" ]; then cp "$run/baseline.csv" "docs/lm/runs/$name$SUFFIX-seed$seed/"; fi
  done
done
mkdir -p docs/lm/runs/teacher
cp "$OUT/teacher/history.csv" "$OUT/teacher/cpu_seconds" docs/lm/runs/teacher/
