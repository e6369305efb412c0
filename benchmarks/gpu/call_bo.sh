#!/usr/bin/env bash
# GPU call BO (nvidia-h200, one GPU), tenth session (2026-11-29). Carry: .whl (fla 0.2.2; rebuild with
# bash benchmarks/gpu/fetch_wheels.sh). Rewritten after run BP made three kernel switches default
# (NIRVANA_GDR_INV_DIAG=blocks, NIRVANA_GDR_INV_KKT_PREC=input for 16-bit inputs, NIRVANA_GDR_DQK_DG=rowsum):
# (1) gpu_kernel_check.py --gdr-only at lang and mri with the new defaults (values and every gradient vs the
#     float64 reference, tails, both states; BN stopped at 115 s, BK checked three shapes in 113 s);
# (2) kernels.py gdr + gdr-breakdown at lang, fla in the same process, with the pre-BP defaults at head dim 128 as
#     an ours[...] row (TF32 Kn Kn^T there); (3) the same at mri with head dim 64's pre-BP defaults (3xTF32).
# Expected ~7.5 min; hard limits 200 + 150 + 120 s (BM: kernels.py gdr,gdr-breakdown at lang with two variants
# fitted its 270 s limit with room). Five files back.
set -u
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/flash_linear_attention-0.2.2-py3-none-any.whl && export PYTHONPATH=/tmp/site:$PWD
timeout 200 python3 benchmarks/gpu_kernel_check.py --gdr-only --skip-fla --gdr-shapes lang,mri --budget 185 \
  --out "$OUT/check_gdr.json" > /tmp/check.log 2>&1
stamp "check $?"; grep -E "^\| gdr" /tmp/check.log | cut -c1-160
PRE="NIRVANA_GDR_INV_DIAG=masked+NIRVANA_GDR_DQK_DG=score+NIRVANA_GDR_INV_KKT_PREC"
for spec in "lang:${PRE}=tf32:150" "mri:${PRE}=tf32x3:120"; do
  IFS=: read -r shape variant limit <<< "$spec"
  timeout "$limit" python3 benchmarks/kernels.py --sections gdr,gdr-breakdown --gdr-shapes "$shape" \
    --gdr-variants "$variant" --skip-reference --budget $(( limit - 12 )) --out "$OUT/kernels_$shape.json" \
    --md "$OUT/kernels_$shape.md" > "/tmp/k_$shape.log" 2>&1
  stamp "kernels $shape $?"; grep -E '^\| (gated|_fwd_inv|_bwd_dqk)' "$OUT/kernels_$shape.md" | cut -c1-200 \
    || tail -n 20 "/tmp/k_$shape.log"
done
