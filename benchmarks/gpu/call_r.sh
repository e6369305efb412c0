#!/usr/bin/env bash
# GPU call R (nvidia-h200), prepared for the next session, not yet run: the split backward (NIRVANA_GDR_BWD=split:
# _bwd_dv_local + _bwd_state_split) against the fused default. gdr_tune.py --kind bwd-split: the default
# plus 18 split variants (state halves 0/1 x reverse-pass V-block 32/64 x backward warps 4/8, and
# _bwd_dv_local at 4 / 8 warps) at the language shape (head dim 128) and the MRI shape (head dim 64, to
# see that it does not regress); each checked against float64 first (o, final state, dq dk dv dg dbeta
# dh0), then timed (forward+backward picks the best). No carry needed (fla is not timed here).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
timeout 80 python3 benchmarks/warm_kernels.py --budget 70 > "$OUT/warm.log" 2>&1; stamp "warm $?"
timeout 370 python3 benchmarks/gdr_tune.py --kind bwd-split --shapes lang,mri --workers 14 --budget 350 \
  --out "$OUT/tune_bwd_split.json" > "$OUT/tune_bwd_split.log" 2>&1
stamp "tune $?"; tail -n 1 "$OUT/tune_bwd_split.log"
# the split backward's full correctness check (head dim 128 with a tail and both states, fp32 and bf16,
# the 1.3B layer stack) before any default is flipped
NIRVANA_GDR_BWD=split timeout 130 python3 benchmarks/gpu_kernel_check.py --budget 115 --out "$OUT/check_split.json" \
  > "$OUT/check_split.log" 2>&1
stamp "split check $?"; tail -n 3 "$OUT/check_split.log"
