#!/usr/bin/env bash
# GPU call I (nvidia-h200): the backward's launch sweep (reverse state pass V-block x backward warps,
# each checked against the float64 reference, then timed), the published 1.3B config's whole backbone
# (ours vs the published stand-in, same process) and the per-launch times at the MRI shape, with the
# forward defaults chosen from call H. Carry: .whl (fla 0.2.2 wheel).
set -u
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/flash_linear_attention-0.2.2-py3-none-any.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
timeout 100 python3 benchmarks/warm_kernels.py --budget 90 > "$OUT/warm.log" 2>&1; stamp "warm $?"
timeout 200 python3 benchmarks/gdr_tune.py --kind bwd --shapes mri,lang --budget 185 --out "$OUT/tune_bwd.json" \
  > "$OUT/tune_bwd.log" 2>&1
stamp "tune $?"; tail -n 1 "$OUT/tune_bwd.log"
timeout 250 python3 benchmarks/kernels.py --sections backbone,gdr-breakdown --gdr-shapes mri \
  --backbones nirvana-1.3b:4:4096 --budget 235 --out "$OUT/kernels.json" --md "$OUT/kernels.md" \
  > "$OUT/kernels.log" 2>&1
stamp "kernels $?"; grep -E "^\| (gated|backbone|gdr_kernel)" "$OUT/kernels.md" | cut -c1-200
