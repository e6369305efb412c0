#!/usr/bin/env bash
# GPU call M (nvidia-h200): with the defaults chosen from call L (split forward, 4 warps for _fwd_inv):
# (1) ours vs fla 0.2.2 side by side in one process at the three delta-rule shapes, then the whole
# backbone (published 1.3B config and 1024x12) vs the published stand-in; (2) the full GPU kernel check
# (values and gradients vs float64 incl. fp32 head dim 128, the Trigger, the 1.3B 2-layer model).
# Carry: .whl/flash_linear_attention-0.2.2-py3-none-any.whl.
set -u
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/flash_linear_attention-0.2.2-py3-none-any.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
timeout 300 python3 benchmarks/kernels.py --sections gdr,backbone --skip-reference \
  --backbones nirvana-1.3b:4:4096,1024x12:8:1600 --budget 285 --out "$OUT/kernels.json" --md "$OUT/kernels.md" \
  > "$OUT/kernels.log" 2>&1
stamp "kernels $?"; grep -E "^\| (gated|backbone)" "$OUT/kernels.md" | cut -c1-200
timeout 260 python3 benchmarks/gpu_kernel_check.py --budget 240 --out "$OUT/check.json" > "$OUT/check.log" 2>&1
stamp "check $?"; grep -E "^\[check\]|PASS|FAIL" "$OUT/check.log" | paste - - | cut -c1-200
