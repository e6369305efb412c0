#!/usr/bin/env bash
# GPU call BU (nvidia-h200, one GPU), tenth session (2026-11-29). Carry: .whl/mri and
# .carry/sim (nirvana-mri simulate --out .carry/sim --coils 2 --matrix 256 --slices-per-volume 2
# --max-subjects 6 --splits 0.67 0.33 0: 4 train / 2 val volumes, 16 MB; the tree may carry 64 MiB in all).
# The user's path for finetune's new CUDA-graph default: nirvana-mri finetune from the bundled model, 40 steps at
# batch 4, validating at steps 20 and 40, once with --no-cuda-graphs and once with the default (graphs on a GPU),
# same seed. Compares the validation SSIM / loss written by each run and the seconds per step in train_log.jsonl.
# Limits 150 s each (graph_finetune.py's 23 steps at batch 8 took ~50 s for both modes in run BR).
set -u
export PYTHONUNBUFFERED=1
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/mri/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
for mode in --no-cuda-graphs default; do
  flag=$([ "$mode" = default ] || echo "$mode")
  timeout 150 python3 -m nirvana_mri.cli finetune --train .carry/sim/train --val .carry/sim/val --out "/tmp/run_$mode" \
    --batch-size 4 --steps 40 --val-every 20 --warmup 5 --workers 2 --seed 0 $flag > "$OUT/finetune_$mode.log" 2>&1
  stamp "finetune $mode $?"
  tail -n 4 "$OUT/finetune_$mode.log" | cut -c1-300
  cp "/tmp/run_$mode/train_log.jsonl" "$OUT/train_log_$mode.jsonl" 2>/dev/null
  cp "/tmp/run_$mode/summary.json" "$OUT/summary_$mode.json" 2>/dev/null
done
