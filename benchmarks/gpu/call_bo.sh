#!/usr/bin/env bash
# GPU call BO (nvidia-h200, one GPU), prepared in the ninth session (2026-11-29), not yet run. Carry: .whl (fla 0.2.2;
# rebuild with bash benchmarks/gpu/fetch_wheels.sh).
# Run BN again with limits that fit (it stopped at 115 s / 185 s):
# (1) gpu_kernel_check.py --gdr-only at lang and mri with the head-dim-128 forward defaults of run BM (16-bit
#     _fwd_wy, one 128-wide block, TF32 Kn Kn^T): BN passed every row but the last (bf16 D128 tail + both states);
# (2) kernels.py gdr at lang with fla in the same process, the pre-BM forward as an ours[...] row;
# (3) graph_grad_order_probe.py --eager-after at 1024x12 B2 T1600: do the zero replayed gradients (BH, BI, BL) come
#     from the probe's eager .backward() steps before its capture? (BK's bisection, with none, replayed exact ones.)
# Expected ~9.5 min: run it alone in a 600 s call; hard limits 180 + 260 + 45 + 100 s (BL timed all three shapes
# with fla in 363 s, BK checked three shapes in 113 s).
# Five files back.
set -u
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/flash_linear_attention-0.2.2-py3-none-any.whl && export PYTHONPATH=/tmp/site:$PWD
timeout 180 python3 benchmarks/gpu_kernel_check.py --gdr-only --skip-fla --gdr-shapes lang,mri --budget 170 \
  --out "$OUT/check_gdr.json" > /tmp/check.log 2>&1
stamp "check $?"; grep -E "^\| gdr" /tmp/check.log | cut -c1-160
OLD="NIRVANA_GDR_FWD_WY_OPS=fp32+NIRVANA_GDR_FWD_WY_BKV=64+NIRVANA_GDR_INV_KKT_PREC=tf32x3"
timeout 260 python3 benchmarks/kernels.py --sections gdr --gdr-shapes lang --gdr-variants "$OLD" --skip-reference \
  --budget 250 --out "$OUT/kernels_lang.json" --md "$OUT/kernels_lang.md" > /tmp/k.log 2>&1
stamp "kernels $?"; grep -E '^\| gated' "$OUT/kernels_lang.md" | cut -c1-200 || tail -n 20 /tmp/k.log
timeout 45 python3 benchmarks/graph_grad_order_probe.py --eager-after --backbone 1024x12:2:1600 \
  --out "$OUT/probe_eager_after.json" 2>&1 | cut -c1-200
stamp "probe --eager-after"
# (4) NIRVANA_GDR_INV_KKT_PREC=input (Kn Kn^T in the inputs' own 16-bit type, exact) among gdr_tune.py --kind fwd-wy's
#     variants at mri and long
timeout 100 python3 benchmarks/gdr_tune.py --kind fwd-wy --shapes mri,long --budget 95 \
  --out "$OUT/tune_fwd_wy_d64.json" > /tmp/tune.log 2>&1
stamp "tune $?"; grep -E '"fwd_ms"|"pass": false|error' /tmp/tune.log | cut -c1-200
