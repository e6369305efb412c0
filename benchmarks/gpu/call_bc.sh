#!/usr/bin/env bash
# GPU call BC (nvidia-h200, one GPU), prepared in the seventh session (2026-11-29), not yet run.
# (1) trigger_tune.py --grid ops: the Trigger v2 with 16-bit operands in its three weight_linear contractions
#     (NIRVANA_TRIGGER_V2_OPS=bf16: the outer-product tile and W rounded to bf16, float32 accumulation; the
#     interpreter tests emulate it, and it compiles for sm_90 offline) beside v1 and v2 with float32 operands,
#     each variant checked against float64 first, then timed with the published einsum form, with CUDA-graph
#     forward times. Run S had v2 at 3.8-4.5x the published form by GPU time of the forward and 4.4-5.8x
#     fwd+bwd; the >= 5x target wants ~0.09 ms forward at B8 T1600 (v2: 0.117).
# (2) kernels.py --sections gdr at the MRI shape with fla 0.2.2: the head-dim-64 ratio with the current
#     defaults (the last same-process one is run X's, before the faster WY backward).
# Carry: .whl/flash_linear_attention-0.2.2-py3-none-any.whl. Expected: (1) ~4.5 min, (2) ~3-4 min (fla's
# first-call autotune); hard limits 280 + 290 s.
set -u
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1 PYTHONPATH=$PWD
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
timeout 280 python3 benchmarks/trigger_tune.py --grid ops --out "$OUT/trigger_tune_ops.json" --budget 260 --rounds 2 \
  --workers 15 > "$OUT/trigger_tune_ops.log" 2>&1
stamp "trigger tune $?"; grep -E '"recommended|"published|error' "$OUT/trigger_tune_ops.log" | cut -c1-300 | tail -n 8
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/flash_linear_attention-0.2.2-py3-none-any.whl && export PYTHONPATH=/tmp/site:$PWD
timeout 290 python3 benchmarks/kernels.py --sections gdr --gdr-shapes mri --skip-reference --budget 280 \
  --out "$OUT/kernels_mri_fla.json" --md "$OUT/kernels_mri_fla.md" > "$OUT/kernels_mri_fla.log" 2>&1
stamp "kernels $?"; grep -E '"op"' "$OUT/kernels_mri_fla.log" | cut -c1-200
