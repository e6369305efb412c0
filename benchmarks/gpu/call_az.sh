#!/usr/bin/env bash
# GPU call AZ (nvidia-h200, one GPU; 2026-11-29, seventh session): the new delta-rule default
# NIRVANA_GDR_PRECISION=auto (16-bit operands above head dim 64, TF32 at 64 and below) after run AY found
# 16-bit operands 1.35x faster at D128 and its check failed to compile _bwd_state_split with a final-state
# gradient (a loop-carried pointer changing type, fp32 dht -> bf16 dhs; fixed, verified offline with
# benchmarks/gdr_compile_diff.py --dt bfloat16 --dim 128).
# (1) gpu_kernel_check.py --gdr-only at the MRI and language shapes with nothing exported: the defaults
#     (tf32 at D64, bf16 operands at D128), tails with both states, fp32, determinism; informative bf16 rows;
# (2) gdr_varlen_check.py at head dim 128, bf16: packed batches through the 16-bit-operand kernels;
# (3) kernels.py: ours (the new default) vs ours[tf32ops] at the language shape, and the published 1.3B
#     backbone (bf16, forward and forward+backward) with the new default (ours only: no fla carried).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
timeout 150 python3 benchmarks/gpu_kernel_check.py --gdr-only --gdr-shapes mri,lang --skip-fla --budget 140 \
  --out "$OUT/check_auto.json" > "$OUT/check_auto.log" 2>&1
stamp "check $?"; grep -E "^\| gdr" "$OUT/check_auto.log"
timeout 90 python3 benchmarks/gdr_varlen_check.py --dim 128 --dtype bfloat16 --json "$OUT/varlen_d128_bf16.json" \
  > "$OUT/varlen_d128_bf16.log" 2>&1
stamp "varlen $?"; tail -n 4 "$OUT/varlen_d128_bf16.log" | cut -c1-300
timeout 170 python3 benchmarks/kernels.py --sections gdr,backbone --gdr-shapes lang --gdr-variants tf32ops \
  --backbones nirvana-1.3b:4:4096 --skip-fla --skip-reference --budget 160 --out "$OUT/kernels_auto.json" \
  --md "$OUT/kernels_auto.md" > "$OUT/kernels_auto.log" 2>&1
stamp "kernels $?"; grep -E '"op"' "$OUT/kernels_auto.log" | cut -c1-260
