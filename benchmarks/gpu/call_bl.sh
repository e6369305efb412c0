#!/usr/bin/env bash
# GPU call BL (nvidia-h200, one GPU), ninth session (2026-11-29), run inline (this file records the command).
# Carry: .whl (fla 0.2.2). (1) graph_grad_bisect.py at 1024x12 B8 T1600 (run BK's was B2); (2) the order probe
# at B2 T1600 (does it fail where the bisection's whole-model capture passes?); (3) kernels.py gdr at all three
# issue shapes with fla in the same process, after BK's new defaults (16-bit operands at head dim 64 and in the
# WY backward).
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/flash_linear_attention-0.2.2-py3-none-any.whl
export PYTHONPATH=/tmp/site:$PWD
T0=$(date +%s)
timeout 90 python3 benchmarks/graph_grad_bisect.py --backbone 1024x12:8:1600 --backends triton \
  --out $OUT/bisect_b8.json 2>&1 | grep -v Warn | cut -c1-200
echo "[$(( $(date +%s)-T0 ))s] bisect b8"
timeout 60 python3 benchmarks/graph_grad_order_probe.py --backbone 1024x12:2:1600 --out $OUT/probe_b2.json 2>&1 \
  | cut -c1-200
echo "[$(( $(date +%s)-T0 ))s] probe b2"
timeout 400 python3 benchmarks/kernels.py --sections gdr --gdr-shapes mri,long,lang --skip-reference --budget 390 \
  --out $OUT/kernels_gdr_fla.json --md $OUT/kernels_gdr_fla.md > /tmp/k.log 2>&1
echo "[$(( $(date +%s)-T0 ))s] kernels $?"
grep -E '"op"' /tmp/k.log | cut -c1-200
cp /tmp/k.log $OUT/kernels_gdr_fla.log
