#!/usr/bin/env bash
# GPU call BB (nvidia-h200, one GPU), prepared in the seventh session (2026-11-29), not yet run.
# (1) The Trigger v2 kernels before they can become the default (run S: faster than v1 at every shape, all
#     variants PASS with bf16 inputs): gpu_kernel_check.py --skip-gdr with NIRVANA_TRIGGER_IMPL=v2 and run S's
#     recommended forward launch exported: Trigger learn fp32 (3xTF32) and bf16, predict-only, the
#     attention branch, and the whole model (1024x12, 4 layers; nirvana-1.3b, 2 layers, fp32) Triton vs
#     PyTorch; --skip-layers leaves out the norm / conv rows (passed in run AB; the conv rows take minutes).
# (2) The training-step CUDA graph fault (runs AO, AU-AX, AY0): graph_train_probe.py with kernels.py's whole
#     sequence (its eager row, the eager references, empty_cache, the capture: as-kernels-py) at B8 T1600 then
#     B2 T6400 in one process (run AW's order), the same with SDPA forced to its math and flash backends (AX
#     swapped our kernels for their references and the failure did not move: the attention is the suspect
#     left), and do-bench-first in that order for contrast.
# (1) also checks the attention branch for the first time on the GPU (full causal SDPA; the sliding window
#     through sdpa / blocked / flex, each vs a float64 softmax with the dense mask: output and dq dk dv).
# (3) kernels.py --sections attention: issue 4's "SDPA / FlexAttention / Triton, whichever measures faster"
#     (run A's attention rows came back empty: that run faulted first); full causal at the MRI and language
#     shapes through SDPA and FlexAttention, the 512 window at B2 T6400 through sdpa / blocked / flex, with peak
#     memory. causal_attention's "auto"
#     takes blocked for a window under T/2: keep or change it by these rows.
# Expected: (1) ~3-4 min, (2) ~1-2 min, (3) ~1-2 min (flex compiles); hard limits 280 + 150 + 130 s. Nothing to
# carry.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
NIRVANA_TRIGGER_IMPL=v2 NIRVANA_TRIGGER_V2_FWD=32,4,128 timeout 280 python3 benchmarks/gpu_kernel_check.py \
  --skip-gdr --skip-layers --skip-fla --budget 260 --out "$OUT/check_trigger_v2.json" > "$OUT/check_trigger_v2.log" 2>&1
stamp "check $?"; grep -E "^\| (trigger|model|attention)|exported" "$OUT/check_trigger_v2.log"
timeout 150 python3 benchmarks/graph_train_probe.py --shape 8:1600,2:6400 --variants as-kernels-py,as-kernels-py+sdpa-math,as-kernels-py+sdpa-flash,do-bench-first \
  --out "$OUT/graph_probe_sequence.json" > "$OUT/graph_probe_sequence.log" 2>&1
stamp "probe $?"; cut -c1-220 "$OUT/graph_probe_sequence.log" | grep -v "^ "
timeout 130 python3 benchmarks/kernels.py --sections attention --skip-fla --skip-reference --budget 120 \
  --out "$OUT/kernels_attention.json" --md "$OUT/kernels_attention.md" > "$OUT/kernels_attention.log" 2>&1
stamp "attention $?"; grep -E '"op"' "$OUT/kernels_attention.log" | cut -c1-220
