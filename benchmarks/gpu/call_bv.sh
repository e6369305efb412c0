#!/usr/bin/env bash
# GPU call BV (nvidia-h200, one GPU), tenth session (2026-11-29), on the session's last ~6 minutes. Nothing to carry.
# The Trigger with weight gradients (pretraining) by GPU time: trigger_tune.py --grid default times the default
# beside the published einsum form in one process per shape, now also replaying forward+backward WITH the weight
# gradients from a CUDA graph (fwdbwd_wgrad_graph_ms). Until now that path had only eager times (2.3-3.0x, run BF),
# which are host-bound. Limit 150 s, one timing round (run BE's --grid defaults had three variants, two rounds).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
timeout 150 python3 benchmarks/trigger_tune.py --grid default --shapes mri,mid,long --rounds 1 --budget 140 \
  --out "$OUT/trigger_wgrad_graph.json" > "$OUT/trigger_wgrad_graph.log" 2>&1
stamp "trigger $?"; grep -E '"shape"' "$OUT/trigger_wgrad_graph.log" | cut -c1-600
