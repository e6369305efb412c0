#!/usr/bin/env bash
# GPU call P (nvidia-h200), prepared, not yet run: the split backward (NIRVANA_GDR_BWD=split:
# _bwd_dv_local + _bwd_state_split) against the fused default. gdr_tune.py --kind bwd-split: the default
# plus 18 split variants (state halves 0/1 x reverse-pass V-block 32/64 x backward warps 4/8, and
# _bwd_dv_local at 4 / 8 warps) at the language shape (head dim 128) and the MRI shape (head dim 64, to
# see that it does not regress); each checked against float64 first (o, final state, dq dk dv dg dbeta
# dh0), then timed (forward+backward picks the best). No carry needed (fla is not timed here).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
timeout 100 python3 benchmarks/warm_kernels.py --budget 90 > "$OUT/warm.log" 2>&1; stamp "warm $?"
timeout 460 python3 benchmarks/gdr_tune.py --kind bwd-split --shapes lang,mri --workers 14 --budget 440 \
  --out "$OUT/tune_bwd_split.json" > "$OUT/tune_bwd_split.log" 2>&1
stamp "tune $?"; tail -n 1 "$OUT/tune_bwd_split.log"
