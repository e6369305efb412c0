#!/usr/bin/env bash
# GPU call BS (nvidia-h200, one GPU), tenth session (2026-11-29). Carry: .whl (fla 0.2.2 and .whl/mri).
# (1) kernels.py gdr at mri and long (head dim 64), fla in the same process, with run BP's defaults (checked in
#     BO), plus gdr-breakdown; limit 300 s (BL: three shapes incl. lang in 357 s);
# (2) call BQ's second step: graph_finetune.py at batch 2; limit 100 s (batch 8 took ~50 s in BR).
set -u
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/flash_linear_attention-0.2.2-py3-none-any.whl .whl/mri/*.whl 2>/dev/null; export PYTHONPATH=/tmp/site:$PWD
timeout 300 python3 benchmarks/kernels.py --sections gdr,gdr-breakdown --gdr-shapes mri,long --skip-reference \
  --budget 285 --out "$OUT/kernels_d64.json" --md "$OUT/kernels_d64.md" > "$OUT/kernels_d64.log" 2>&1
stamp "kernels d64 $?"
grep -E '^\| gated' "$OUT/kernels_d64.md" 2>/dev/null | cut -c1-200
grep -E '^  \{' "$OUT/kernels_d64.log" | cut -c1-170 | tail -n 24
timeout 100 python3 benchmarks/graph_finetune.py --batch-size 2 --steps 20 --out "$OUT/graph_finetune_b2.json" \
  > "$OUT/graph_finetune_b2.log" 2>&1
stamp "graph finetune batch 2 $?"; tail -n 3 "$OUT/graph_finetune_b2.log" | cut -c1-500
