#!/usr/bin/env bash
# All GPU measurements of one device session, in one command (see BUILD_NOTES.md):
#   1. MAML meta-training throughput (benchmarks.maml_throughput), XLA's conv and im2col,
#      with the PyTorch peers (CUDA) where torch imports (PEERS="" to skip),
#   2. MAML on Omniglot for a time budget sized from (1), then its 600-task evaluation;
#      or, with RESUME=DIR (a committed run in progress, e.g. results/omniglot_20w1s_maml),
#      that run continued for TRAIN_SECONDS and stopped, its checkpoints kept.
# Outputs under $OUT: throughput.json, results.json, metrics.jsonl, train.log, variables.tar;
#   with RESUME, resumed.tar (the run's folder, to unpack over DIR).
# Env: VARIANT (omniglot_5w1s), TRAIN_SECONDS (300), SETTINGS (5w1s,20w1s; "" skips (1)),
#      DATA_DIR (.gpu_data), CALLS (10): timed calls per block in the throughput benchmark.
set -uo pipefail
OUT=${OUT:-/tmp/jaxtl_out}; mkdir -p "$OUT"
VARIANT=${VARIANT:-omniglot_5w1s}; TRAIN_SECONDS=${TRAIN_SECONDS:-300}
SETTINGS=${SETTINGS-5w1s,20w1s}; DATA_DIR=${DATA_DIR:-.gpu_data}; CALLS=${CALLS:-10}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
PY=${PY:-python3}
nvidia-smi -L 2>/dev/null || true
if [ -n "$SETTINGS" ]; then
  $PY -m benchmarks.maml_throughput --settings="$SETTINGS" --calls="$CALLS" --repeats=3 \
      --steps_per_call=10 --conv=xla,im2col --peers="${PEERS-torch.func,learn2learn method}" \
      --out="$OUT/throughput.json" 2>&1 | grep -v "^I1"
fi
if [ -n "${RESUME:-}" ]; then  # execution fields may differ from the run's (jaxtl.workdir)
  WORK=/tmp/jaxtl_resume; rm -rf "$WORK"; cp -r "$RESUME" "$WORK"
  timeout "$TRAIN_SECONDS" $PY -m experiments.meta_train --config="experiments/configs/meta.py:$VARIANT" \
      --workdir="$WORK" --config.data_dir="$DATA_DIR" --config.steps_per_call=50 \
      --config.log_every=500 --config.checkpoint_every=500 2>&1 | grep -v "x2num" \
      | tee "$OUT/train.log" | grep -v "^I1.*\] \(block\|head\|path\)"
  tar -C "$WORK" -cf "$OUT/resumed.tar" --exclude=tb .
  ls -la "$OUT"; exit 0
fi
steps=$($PY - "$OUT/throughput.json" "$TRAIN_SECONDS" <<'PY'
import json, sys
rate = json.load(open(sys.argv[1]))["results"][0]["meta_iterations_per_second"]
print(max(int(min(60000, rate * float(sys.argv[2]))) // 1000 * 1000, 1000))
PY
)
echo "training $VARIANT for $steps meta-iterations"
WORK=/tmp/jaxtl_run; rm -rf "$WORK"
$PY -m experiments.meta_train --config="experiments/configs/meta.py:$VARIANT" --workdir="$WORK" \
    --config.data_dir="$DATA_DIR" --config.num_steps="$steps" --config.steps_per_call=50 \
    --config.log_every=1000 --config.checkpoint_every=5000 2>&1 | grep -v "x2num" | tee "$OUT/train.log" | grep -v "^I1.*\] \(block\|head\|path\)"
cp "$WORK/results.json" "$WORK/metrics.jsonl" "$OUT/" 2>/dev/null
tar -C "$WORK" -cf "$OUT/variables.tar" variables 2>/dev/null
ls -la "$OUT"
