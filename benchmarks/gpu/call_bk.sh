#!/usr/bin/env bash
# GPU call BK (nvidia-h200, one GPU), ninth session (2026-11-29). Nothing to carry.
# After run BI the delta rule's defaults changed: 16-bit operands at every head dim for 16-bit inputs
# (NIRVANA_GDR_PRECISION=auto -> bf16, head dim 64 included) and the WY backward's products over K and V with
# 16-bit operands (NIRVANA_GDR_WY_OPS default bf16). This call:
# (1) gpu_kernel_check.py --gdr-only at the three issue shapes with the new defaults (values and every gradient
#     vs float64), then --model-only (whole model, Triton vs PyTorch, every kernel in place);
# (2) graph_grad_bisect.py: which part of the backbone makes a captured training step replay zero input
#     gradients (runs BH, BI), and torch.cuda.make_graphed_callables on the whole model;
# (3) kernels.py backbone rows with the new defaults: 1024x12 B8 T1600 (the row) and the bundled MRI
#     backbone at B8 / B1 T1600, eager and CUDA-graph forward.
# Hard limits 140 + 70 + 100 + 170 s. Five files back through $OUT; logs in /tmp/bk, key lines to stdout.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
W=/tmp/bk; mkdir -p "$W"
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
timeout 140 python3 benchmarks/gpu_kernel_check.py --gdr-only --skip-fla --budget 120 --out "$OUT/check_gdr.json" \
  > "$W/check_gdr.log" 2>&1
stamp "check gdr $?"; grep -iE "pass|fail|rel" "$W/check_gdr.log" | cut -c1-220 | tail -n 25
timeout 70 python3 benchmarks/gpu_kernel_check.py --model-only --budget 60 --out "$OUT/check_model.json" \
  > "$W/check_model.log" 2>&1
stamp "check model $?"; grep -iE "pass|fail|rel" "$W/check_model.log" | cut -c1-220 | tail -n 8
timeout 100 python3 benchmarks/graph_grad_bisect.py --backbone 1024x12:2:1600 --out "$OUT/graph_grad_bisect.json" \
  2>&1 | cut -c1-260 | tail -n 20
stamp "bisect"
timeout 170 python3 benchmarks/kernels.py --skip-fla --sections backbone \
  --backbones 1024x12:8:1600,bundled:8:1600,bundled:1:1600 --backbone-extra ours-cudagraph --budget 160 \
  --out "$OUT/backbone_rows.json" --md "$W/backbone_rows.md" > "$W/backbone_rows.log" 2>&1
stamp "backbone $?"; grep -E "^\| backbone" "$W/backbone_rows.md" | cut -c1-200 || tail -n 20 "$W/backbone_rows.log"
cp "$W/check_gdr.log" "$OUT/check_gdr.log"
