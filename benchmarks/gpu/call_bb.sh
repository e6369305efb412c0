#!/usr/bin/env bash
# GPU call BB (nvidia-h200, one GPU), prepared in the seventh session (2026-11-29), not yet run.
# (1) The Trigger v2 kernels before they can become the default (run S: faster than v1 at every shape, all
#     variants PASS with bf16 inputs): gpu_kernel_check.py --skip-gdr with NIRVANA_TRIGGER_IMPL=v2 and run S's
#     recommended forward launch exported: Trigger learn fp32 (3xTF32) and bf16, predict-only, the layer
#     kernels, and the whole model (1024x12, 4 layers; nirvana-1.3b, 2 layers, fp32) Triton vs PyTorch.
# (2) The training-step CUDA graph fault (runs AO, AU-AX, AY0): graph_train_probe.py with kernels.py's whole
#     sequence (its eager row, the eager references, empty_cache, the capture: as-kernels-py) at B8 T1600 then
#     B2 T6400 in one process (run AW's order), and do-bench-first in that order for contrast.
# Expected: (1) ~3 min, (2) ~1-2 min. Nothing to carry.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
NIRVANA_TRIGGER_IMPL=v2 NIRVANA_TRIGGER_V2_FWD=32,4,128 timeout 260 python3 benchmarks/gpu_kernel_check.py \
  --skip-gdr --skip-fla --budget 240 --out "$OUT/check_trigger_v2.json" > "$OUT/check_trigger_v2.log" 2>&1
stamp "check $?"; grep -E "^\| (trigger|model)|exported" "$OUT/check_trigger_v2.log"
timeout 200 python3 benchmarks/graph_train_probe.py --shape 8:1600,2:6400 --variants as-kernels-py,do-bench-first \
  --out "$OUT/graph_probe_sequence.json" > "$OUT/graph_probe_sequence.log" 2>&1
stamp "probe $?"; cut -c1-220 "$OUT/graph_probe_sequence.log" | grep -v "^ "
