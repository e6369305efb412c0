#!/usr/bin/env bash
# GPU call BX (nvidia-h200, one GPU), prepared in the tenth session (2026-11-29), not yet run. Nothing to carry.
# The Trigger's weight-gradient path (pretraining; run BV: 1.08-1.14x the published form by GPU time):
# (1) trigger_wgrad_profile.py again (run BW's step): the [C, L] weights' bmm is split-K since BW (0.451 ms there);
#     limit 100 s (BW: 38 s);
# (2) trigger_tune.py --grid wlg at mri and mid: weight_linear's gradient through v1's _wl_grad (gathers y and z per
#     column; 0.765 ms in BW) and the new _wl_grad_v2 (y [BK, BO] and z [BK, L] loaded once per step: 39 async-copy
#     instructions vs 378 for sm_90 offline; two products per step instead of three) and cuBLAS over chunks of
#     tokens (NIRVANA_TRIGGER_WLG_IMPL=torch, the comparison); launches and bf16 operands. Every variant is
#     checked against float64 with and without weight gradients, then ranked by fwdbwd_wgrad_graph_ms (CUDA-graph
#     replay beside the published form). Limit 330 s (BV's --grid default, one variant and three shapes: 76 s; twelve variants compile
#     side by side on 16 cores). Make the winner default if it passes and is faster.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
timeout 100 python3 benchmarks/trigger_wgrad_profile.py --out "$OUT/trigger_wgrad_profile.json" 2>&1 | cut -c1-200
stamp "profile ${PIPESTATUS[0]}"
timeout 330 python3 benchmarks/trigger_tune.py --grid wlg --shapes mri,mid --rounds 1 --budget 320 \
  --out "$OUT/trigger_wlg.json" > "$OUT/trigger_wlg.log" 2>&1
stamp "tune wlg $?"; grep -E '"pass": false|"shape"|recommended' "$OUT/trigger_wlg.log" | cut -c1-420
