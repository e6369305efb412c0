#!/usr/bin/env bash
# GPU call BT (nvidia-h200, one GPU), tenth session (2026-11-29). Nothing to carry.
# Whole-backbone rows with run BP's delta-rule defaults (BE's set: 1024x12 B8 T1600 and B2 T6400, the 1.3B config
# at B4 T4096; eager, CUDA-graph forward, CUDA-graph training step), against the reference figures for the
# published code; limit 150 s (BE: 52 s). Then gpu_kernel_check.py --model-only (whole model vs the PyTorch
# layers; BK's limit 70 s).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
timeout 150 python3 benchmarks/kernels.py --skip-fla --sections backbone \
  --backbones 1024x12:8:1600,nirvana-1.3b:4:4096,1024x12:2:6400 --backbone-extra ours-cudagraph,ours-cudagraph-train \
  --budget 140 --out "$OUT/backbone_rows.json" --md "$OUT/backbone_rows.md" > "$OUT/backbone_rows.log" 2>&1
stamp "backbone $?"; grep -E "^\| backbone" "$OUT/backbone_rows.md" 2>/dev/null | cut -c1-200
timeout 70 python3 benchmarks/gpu_kernel_check.py --model-only --budget 60 --out "$OUT/check_model.json" \
  > "$OUT/check_model.log" 2>&1
stamp "check model $?"; grep -iE "pass|fail" "$OUT/check_model.log" | cut -c1-200 | tail -n 8
