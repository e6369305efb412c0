#!/usr/bin/env bash
# GPU call AY (nvidia-h200, one GPU; 2026-11-29, seventh session). Run AY0 (this session's first call,
# call_dqk_split.sh CHECK=0 SHAPES=lang,mri TUNE=0) timed, at B4 T4096 H16 D128 in one process: ours 1.296 /
# 3.813 ms, ours[dqk-split] 1.286 / 4.016, fla 1.354 / 2.996, ours-bf16ops 0.910 / 2.838 (forward /
# forward+backward; the first run where the bf16ops backward really ran with 16-bit operands). So the K-split
# loses and 16-bit operands beat fla at head dim 128. This call:
# (1) gpu_kernel_check.py --gdr-only with NIRVANA_GDR_PRECISION=bf16 exported: every delta-rule row (MRI and
#     language shapes, tails with both states at D64 and D128) through the 16-bit-operand kernels, errors vs
#     float64 (fp32 rows are unaffected by the switch);
# (2) kernels.py --sections gdr,gdr-breakdown at the language shape with fla 0.2.2: ours (tf32 operands),
#     ours[bf16ops] and fla side by side, then every launch of one forward+backward under both precisions.
# Carry: .whl/flash_linear_attention-0.2.2-py3-none-any.whl.
set -u
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1 PYTHONPATH=$PWD
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/flash_linear_attention-0.2.2-py3-none-any.whl && export PYTHONPATH=/tmp/site:$PWD
NIRVANA_GDR_PRECISION=bf16 timeout 150 python3 benchmarks/gpu_kernel_check.py --gdr-only --gdr-shapes mri,lang \
  --skip-fla --budget 140 --out "$OUT/check_bf16ops.json" > "$OUT/check_bf16ops.log" 2>&1
stamp "check $?"; grep -E "^\| gdr" "$OUT/check_bf16ops.log"
timeout 380 python3 benchmarks/kernels.py --sections gdr,gdr-breakdown --gdr-shapes lang --gdr-variants bf16ops \
  --skip-reference --budget 360 --out "$OUT/kernels_bf16ops.json" --md "$OUT/kernels_bf16ops.md" \
  > "$OUT/kernels_bf16ops.log" 2>&1
stamp "kernels $?"; grep -E "gated_delta_rule|gdr_kernel" "$OUT/kernels_bf16ops.log" | cut -c1-200
