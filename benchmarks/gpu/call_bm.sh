#!/usr/bin/env bash
# GPU call BM (nvidia-h200, one GPU), ninth session (2026-11-29). Carry: .whl (fla 0.2.2).
# Run BL measured our head-dim-128 forward at 0.905 ms against fla's 0.763 (same process): the forward alone
# below 1.0x there. Its first stage is _fwd_inv_block (0.33 ms) + _fwd_wy (0.19 ms, run AY), the latter moving
# ~0.6 GB (M read once per 64-wide column block). This call:
# (1) gdr_tune.py --kind fwd-wy at lang, mri, long: NIRVANA_GDR_FWD_WY_OPS=bf16 (16-bit operands in _fwd_wy,
#     U stored 16-bit, as fla), NIRVANA_GDR_FWD_WY_BKV=128, 8 warps, NIRVANA_GDR_INV_KKT_PREC=tf32; every
#     variant checked against float64 first (values and every gradient), then timed in one process per shape;
# (2) kernels.py gdr + gdr-breakdown at lang with fla in the same process, for the default and the two
#     _fwd_wy variants: per-launch times and the ratio to fla.
# Hard limits 245 + 270 s. Three files back.
set -u
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/flash_linear_attention-0.2.2-py3-none-any.whl && export PYTHONPATH=/tmp/site:$PWD
timeout 245 python3 benchmarks/gdr_tune.py --kind fwd-wy --shapes lang,mri,long --budget 235 \
  --out "$OUT/tune_fwd_wy.json" > /tmp/tune_fwd_wy.log 2>&1
stamp "tune $?"; grep -E '"fwd_ms"|"pass": false|error' /tmp/tune_fwd_wy.log | cut -c1-260
V="NIRVANA_GDR_FWD_WY_OPS=bf16,NIRVANA_GDR_FWD_WY_OPS=bf16+NIRVANA_GDR_FWD_WY_BKV=128"
timeout 270 python3 benchmarks/kernels.py --sections gdr,gdr-breakdown --gdr-shapes lang --gdr-variants "$V" \
  --skip-reference --budget 255 --out "$OUT/kernels_fwd_wy.json" --md "$OUT/kernels_fwd_wy.md" > /tmp/k.log 2>&1
stamp "kernels $?"; grep -E '^\| (gated|_fwd)' "$OUT/kernels_fwd_wy.md" | cut -c1-200 || tail -n 20 /tmp/k.log
