#!/usr/bin/env bash
# GPU call BN (nvidia-h200, one GPU), ninth session (2026-11-29). Carry: .whl (fla 0.2.2).
# The head-dim-128 forward defaults chosen from run BM: _fwd_wy with 16-bit operands (NIRVANA_GDR_FWD_WY_OPS=auto
# -> bf16 above head dim 64), one 128-wide column block there (fwd_wy_block) and a TF32 Kn Kn^T
# (NIRVANA_GDR_INV_KKT_PREC default tf32 with 16-bit operands above head dim 64).
# (1) gpu_kernel_check.py --gdr-only at lang and mri: values and every gradient vs float64 with the new defaults;
# (2) kernels.py gdr at lang with fla in the same process, and the previous defaults as an ours[...] row.
# Hard limits 115 + 185 s. Three files back.
# Ran 2026-11-29: both steps hit their limits, too tight for compiling the new variants (and fla autotuning).
# The check had passed every row but the last (bf16 tail + both states at D128) when stopped
# (kernels/call_bn_check_gdr_partial.json); the kernels.py step timed nothing.
set -u
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/flash_linear_attention-0.2.2-py3-none-any.whl && export PYTHONPATH=/tmp/site:$PWD
timeout 115 python3 benchmarks/gpu_kernel_check.py --gdr-only --skip-fla --gdr-shapes lang,mri --budget 100 \
  --out "$OUT/check_gdr.json" > /tmp/check.log 2>&1
stamp "check $?"; grep -E "^\| gdr" /tmp/check.log | cut -c1-160
OLD="NIRVANA_GDR_FWD_WY_OPS=fp32+NIRVANA_GDR_FWD_WY_BKV=64+NIRVANA_GDR_INV_KKT_PREC=tf32x3"
timeout 185 python3 benchmarks/kernels.py --sections gdr --gdr-shapes lang --gdr-variants "$OLD" --skip-reference \
  --budget 175 --out "$OUT/kernels_lang.json" --md "$OUT/kernels_lang.md" > /tmp/k.log 2>&1
stamp "kernels $?"; grep -E '^\| gated' "$OUT/kernels_lang.md" | cut -c1-200 || tail -n 20 /tmp/k.log
