#!/usr/bin/env bash
# GPU call BC (nvidia-h200, one GPU), prepared in the seventh session (2026-11-29), not yet run.
# (1) trigger_tune.py --grid ops: the Trigger v2 with 16-bit operands in its three weight_linear contractions
#     (NIRVANA_TRIGGER_V2_OPS=bf16: the outer-product tile and W rounded to bf16, float32 accumulation; the
#     interpreter tests emulate it, and it compiles for sm_90 offline) beside v1 and v2 with float32 operands,
#     each variant checked against float64 first, then timed with the published einsum form, with CUDA-graph
#     forward times. Run S had v2 at 3.8-4.5x the published form by GPU time of the forward and 4.4-5.8x
#     fwd+bwd; the >= 5x target wants ~0.09 ms forward at B8 T1600 (v2: 0.117).
# (2) gdr_tune.py --kind wy-ops at the language shape: the WY backward with 16-bit operands in its products
#     over K and V (NIRVANA_GDR_WY_OPS=bf16; the default's compiled code is unchanged: gdr_compile_diff.py
#     PTX / SASS same) at 4 / 8 warps and one 128-wide K block, each checked against float64 first. It was
#     0.703 ms of the 2.81 ms fwd+bwd at D128 in run AY; make it the default there if it wins and passes.
# Expected: (1) ~4.5 min, (2) ~3 min; hard limits 280 + 220 s. Nothing to carry. The D64 ratio against fla
# with the current defaults (the last same-process one is run X's, before the faster WY backward) is
# call_bd.sh.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
timeout 280 python3 benchmarks/trigger_tune.py --grid ops --out "$OUT/trigger_tune_ops.json" --budget 260 --rounds 2 \
  --workers 15 > "$OUT/trigger_tune_ops.log" 2>&1
stamp "trigger tune $?"; grep -E '"recommended|"published|error' "$OUT/trigger_tune_ops.log" | cut -c1-300 | tail -n 8
timeout 220 python3 benchmarks/gdr_tune.py --kind wy-ops --shapes lang --workers 12 --budget 205 \
  --out "$OUT/tune_wy_ops.json" > "$OUT/tune_wy_ops.log" 2>&1
stamp "wy-ops tune $?"; grep -E '"fwdbwd_ms"|recommended|"pass": false' "$OUT/tune_wy_ops.log" | cut -c1-260
