#!/usr/bin/env bash
# GPU call BW (nvidia-h200, one GPU), tenth session (2026-11-29). Nothing to carry. Run twice: BW (before the
# split-K small-weight gradients) and BX (after).
# Per-kernel device time of the Trigger's forward+backward with and without weight gradients (torch.profiler) at
# the MRI token shape: run BV found the weight-gradient path 1.48 ms of GPU time vs 0.215 ms without. Limit 100 s.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
timeout 100 python3 benchmarks/trigger_wgrad_profile.py --out "$OUT/trigger_wgrad_profile.json" 2>&1 | cut -c1-200
echo "rc ${PIPESTATUS[0]}"
