#!/usr/bin/env bash
# GPU call G (nvidia-h200): head dim 128 after the fix (4 backward warps there), then the kernel rows
# that earlier runs did not reach: the delta rule at the long-scan and language shapes vs fla in the
# same run, the published 1.3B config's whole backbone (ours vs the published stand-in, same
# process), and per-launch times of our six delta-rule kernels. Carry: .whl (fla 0.2.2 wheel).
set -u
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/flash_linear_attention-0.2.2-py3-none-any.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
timeout 100 python3 benchmarks/warm_kernels.py --budget 90 > "$OUT/warm.log" 2>&1; stamp "warm $?"
timeout 150 python3 benchmarks/gpu_kernel_check.py --budget 120 --out "$OUT/check.json" > "$OUT/check.log" 2>&1
stamp "check $?"; grep -E "^\|" "$OUT/check.log" | cut -c1-160
timeout 290 python3 benchmarks/kernels.py --check-json "$OUT/check.json" --sections gdr,backbone,gdr-breakdown \
  --backbones nirvana-1.3b:4:4096,1024x12:8:1600 --budget 270 --out "$OUT/kernels.json" --md "$OUT/kernels.md" \
  > "$OUT/kernels.log" 2>&1
stamp "kernels $?"; grep -E "^\| (gated|backbone|gdr_kernel)" "$OUT/kernels.md" | cut -c1-200
