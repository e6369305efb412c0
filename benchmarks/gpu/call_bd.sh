#!/usr/bin/env bash
# GPU call BD (nvidia-h200, one GPU), prepared in the seventh session (2026-11-29), not yet run: the
# head-dim-64 delta rule against fla 0.2.2 in one process with the current defaults (the last same-process
# ratio is run X's: 1.82x / 2.33x at the MRI shape, before the faster WY backward), then the long-scan shape
# if the budget allows (fla's first call at each shape autotunes for minutes).
# Carry: .whl/flash_linear_attention-0.2.2-py3-none-any.whl. Hard limit 560 s.
set -u
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1 PYTHONPATH=$PWD
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/flash_linear_attention-0.2.2-py3-none-any.whl && export PYTHONPATH=/tmp/site:$PWD
timeout 560 python3 benchmarks/kernels.py --sections gdr --gdr-shapes mri,long --skip-reference --budget 540 \
  --out "$OUT/kernels_d64_fla.json" --md "$OUT/kernels_d64_fla.md" > "$OUT/kernels_d64_fla.log" 2>&1
stamp "kernels $?"; grep -E '"op"' "$OUT/kernels_d64_fla.log" | cut -c1-200
