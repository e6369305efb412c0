#!/usr/bin/env bash
# GPU call BO (nvidia-h200, one GPU), prepared in the ninth session (2026-11-29), not yet run. Carry: .whl (fla 0.2.2;
# rebuild with bash benchmarks/gpu/fetch_wheels.sh).
# Run BN again with limits that fit (it stopped at 115 s / 185 s):
# (1) gpu_kernel_check.py --gdr-only at lang and mri with the head-dim-128 forward defaults of run BM (16-bit
#     _fwd_wy, one 128-wide block, TF32 Kn Kn^T): BN passed every row but the last (bf16 D128 tail + both states);
# (2) kernels.py gdr at lang with fla in the same process, the pre-BM forward as an ours[...] row, and the opt-in
#     [4, 16, 16] diagonal inverses (NIRVANA_GDR_INV_DIAG=blocks) as another.
# Expected ~8 min; hard limits 200 + 300 s (BK checked three shapes in 113 s; BL timed three shapes with fla in
# 363 s). Three files back.
set -u
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/flash_linear_attention-0.2.2-py3-none-any.whl && export PYTHONPATH=/tmp/site:$PWD
timeout 200 python3 benchmarks/gpu_kernel_check.py --gdr-only --skip-fla --gdr-shapes lang,mri --budget 185 \
  --out "$OUT/check_gdr.json" > /tmp/check.log 2>&1
stamp "check $?"; grep -E "^\| gdr" /tmp/check.log | cut -c1-160
V="NIRVANA_GDR_FWD_WY_OPS=fp32+NIRVANA_GDR_FWD_WY_BKV=64+NIRVANA_GDR_INV_KKT_PREC=tf32x3,NIRVANA_GDR_INV_DIAG=blocks"
timeout 300 python3 benchmarks/kernels.py --sections gdr --gdr-shapes lang --gdr-variants "$V" --skip-reference \
  --budget 285 --out "$OUT/kernels_lang.json" --md "$OUT/kernels_lang.md" > /tmp/k.log 2>&1
stamp "kernels $?"; grep -E '^\| gated' "$OUT/kernels_lang.md" | cut -c1-200 || tail -n 20 /tmp/k.log
