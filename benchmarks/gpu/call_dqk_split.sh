#!/usr/bin/env bash
# Run AU (2026-11-29, sixth session; SHAPES=lang,mri TUNE=0): step (1) PASSED at every row; step (2) was cut
# by its 230 s limit after the first two rows (fla's first D128 call autotunes from a cold cache: give it
# minutes), and its ours[dqk-split] row ran the default backward (kernels.py set a variant's switches only
# around the forward; fixed since: forward_backward_under). Run AY0 (seventh session, CHECK=0 SHAPES=lang,mri
# TUNE=0): step (2) timed the split at last, slower than the default at both head dims (4.016 vs 3.813 ms at
# D128, 1.547 vs 1.396 at D64); its fla row at the MRI shape was cut by the 420 s limit again.
# GPU call (nvidia-h200, one GPU): the K-split dq / dk / dW / dG kernel of the delta
# rule's backward, NIRVANA_GDR_BWD_DQK=split (_bwd_dqk_split: grid K-slices x chunks x B*H with 64-wide K
# slices, fla's chunk_bwd_dqkwg layout; the dG partials and, with the q/k L2 norm, dq's row dot finished in
# the WY backward). _bwd_dqk took 0.94 ms of our ~2.5 ms backward at B4 T4096 H16 D128 in run Y2 (255
# registers and 980 B spilled at 8 warps, ptxas offline); _bwd_dqk_split: 226 registers, no spills at 8
# warps with 64-wide V-blocks (offline, Triton 3.8, sm_90). Interpreter tests:
# tests/kernels/test_gated_delta_rule_bwd_dqk_split.py.
# (1) gpu_kernel_check.py --gdr-only with the switch exported: every delta-rule row (bf16 at the MRI and
#     language shapes, fp32 = 3xTF32 products, tails, both states, head dim 128 fp32 / bf16 with a tail and
#     both states, determinism) through _bwd_dqk_split and the WY kernels' finishing step.
# (2) kernels.py --sections gdr,gdr-breakdown --gdr-shapes $SHAPES --gdr-variants dqk-split: "ours" (the
#     default _bwd_dqk) and "ours[dqk-split]" forward / forward+backward in one process (and fla 0.2.2 if its
#     wheel is carried), then every launch of one forward+backward replayed and timed under both:
#     compare "_bwd_dqk" + "_bwd_wy_trans" with "_bwd_dqk_split [dqk-split]" + "_bwd_wy_trans [dqk-split]"
#     (the WY kernel also sums the dG partials and writes dq through the L2 norm after the split).
# (3) gdr_tune.py --kind dqk --shapes lang if time is left: the split at 4 / 8 warps x 32 / 64-wide V-blocks
#     against the default, each checked against float64 first, then timed (forward+backward).
# Look for: check_dqk.log all PASS with errors near the default's (run AE: 2.9e-3 bf16, 5.6e-7 fp32); in
# kernels_dqk.md the fwdbwd_ms of ours[dqk-split] vs ours (3.80 ms in AO2) and the per-launch rows.
# Expected: check ~2.3 min (AU: 137 s), kernels ~3-6 min with fla's cold autotune, tune ~3-4 min (run with
# TUNE=1 only when the call has time left); hard limits 150 + 420 + 240 s.
# Carry (optional, for the fla row): .whl/flash_linear_attention-0.2.2-py3-none-any.whl.
set -u
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1 PYTHONPATH=$PWD
SHAPES=${SHAPES:-lang}; TUNE=${TUNE:-1}; CHECK=${CHECK:-1}  # AU: SHAPES=lang,mri TUNE=0; next: CHECK=0 too
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
SKIP_FLA=--skip-fla
if [ -f .whl/flash_linear_attention-0.2.2-py3-none-any.whl ] && python3 -m pip install -q --no-index --no-deps \
  --no-compile --no-cache-dir --target /tmp/site .whl/flash_linear_attention-0.2.2-py3-none-any.whl; then
  export PYTHONPATH=/tmp/site:$PWD; SKIP_FLA=
fi
if [ "$CHECK" = 1 ]; then
  NIRVANA_GDR_BWD_DQK=split timeout 150 python3 benchmarks/gpu_kernel_check.py --gdr-only --gdr-shapes mri,lang \
    --skip-fla --budget 140 --out "$OUT/check_dqk.json" > "$OUT/check_dqk.log" 2>&1
  stamp "check $?"; grep -E "^\| gdr|recommended_env|exported" "$OUT/check_dqk.log"
fi
timeout 420 python3 benchmarks/kernels.py --sections gdr,gdr-breakdown --gdr-shapes $SHAPES --gdr-variants dqk-split \
  --skip-reference $SKIP_FLA --budget 400 --out "$OUT/kernels_dqk.json" --md "$OUT/kernels_dqk.md" \
  > "$OUT/kernels_dqk.log" 2>&1
stamp "kernels $?"; grep -E "^\| (gated_delta_rule|gdr_kernel)" "$OUT/kernels_dqk.md" | cut -c1-160
if [ "$TUNE" = 1 ] && [ $(( $(date +%s) - T0 )) -lt 300 ]; then
  timeout 240 python3 benchmarks/gdr_tune.py --kind dqk --shapes lang --workers 12 --budget 225 \
    --out "$OUT/tune_dqk.json" > "$OUT/tune_dqk.log" 2>&1
  stamp "tune $?"; tail -n 1 "$OUT/tune_dqk.log"
  python3 - "$OUT/tune_dqk.json" <<'PY' 2>/dev/null || tail -n 20 "$OUT/tune_dqk.log"
import json, sys
for r in json.load(open(sys.argv[1]))["rows"]:
    worst = max((r.get("errors") or {"-": float("nan")}).values())
    print(r["shape"], r["env"] or "default", r.get("pass"), f"{worst:.1e}", r.get("fwd_ms"), r.get("fwdbwd_ms"),
          (r.get("error") or "")[-160:])
PY
fi
