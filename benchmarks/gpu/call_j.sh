#!/usr/bin/env bash
# GPU call J (nvidia-h200): gpu_kernel_check.py at the MRI, long and language shapes with the new
# launch defaults (64-wide state blocks, 4 backward warps). No carry (fla rows skipped).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
timeout 70 python3 benchmarks/warm_kernels.py --budget 60 > "$OUT/warm.log" 2>&1; stamp "warm $?"
timeout 170 python3 benchmarks/gpu_kernel_check.py --skip-fla --budget 150 --out "$OUT/check.json" > "$OUT/check.log" 2>&1
stamp "check $?"; grep -E "^\[check\]|PASS|FAIL" "$OUT/check.log" | paste - - | cut -c1-200
