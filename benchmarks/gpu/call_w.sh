#!/usr/bin/env bash
# GPU call W (nvidia-h200, one GPU): the defaults flipped after runs R and U (head dim 128: split backward
# at 8 warps, half-height forward state tiles at 4 warps; every head dim: the block Kn Kn^T inverse),
# (1) the full correctness check with the new defaults (no switch set), then (2) kernels.py's gated
# delta rule section, ours vs fla 0.2.2 in one process at the three shapes (language first: fla's
# first-call autotuning at head dim 128 takes minutes), then the 1.3B backbone if time is left.
# Carry: .whl/flash_linear_attention-0.2.2-py3-none-any.whl.
set -u
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/flash_linear_attention-0.2.2-py3-none-any.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
timeout 175 python3 benchmarks/gpu_kernel_check.py --budget 165 --out "$OUT/check_w.json" > "$OUT/check_w.log" 2>&1
stamp "check $?"; grep -E "FAIL|recommended" "$OUT/check_w.log" | head; grep -c PASS "$OUT/check_w.log"
timeout 300 python3 benchmarks/kernels.py --sections gdr,backbone --skip-reference --gdr-shapes lang,mri,long \
  --backbones nirvana-1.3b:4:4096 --budget 285 --out "$OUT/kernels.json" --md "$OUT/kernels.md" > "$OUT/kernels.log" 2>&1
stamp "kernels $?"; grep -E "^\| (gated|backbone)" "$OUT/kernels.md" | cut -c1-220
