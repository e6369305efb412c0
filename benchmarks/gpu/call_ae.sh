#!/usr/bin/env bash
# GPU call AE (nvidia-h200, one GPU), prepared, not yet run: the WY backward's variant NIRVANA_GDR_WY=trans
# (_bwd_wy_trans: each tile of K, dW, V, dVn and M loaded once, row-major, transposes by tl.trans of the
# loaded tiles, two passes over K instead of three; same sums up to float32 rounding; interpreter tests in
# tests/kernels/test_gated_delta_rule_bwd_wy.py) against the default _bwd_wy, which took 1.50 of our ~3.3 ms
# backward at the language shape in run Y2. gdr_tune.py --kind wy at the language shape (B4 T4096 H16 D128)
# and the MRI shape (B8 T1600 H16 D64, to see that nothing regresses): the default, _bwd_wy at 4 / 8 warps
# (NIRVANA_GDR_WY_WARPS, the WY kernel only; one of the two repeats the default: a same-run noise estimate),
# _bwd_wy_trans at 4 / 8 warps and, at head dim 128 only, with one 128-wide K block (NIRVANA_GDR_WY_BK=128)
# at the default warps (8) and 4: 7 variants at lang, 5 at mri. Each is checked against float64 first (o,
# final state, dq dk dv dg dbeta dh0; bf16, both states: Triton 3.6 on Hopper has miscompiled tl.dot
# patterns here before) and compiles its timed configuration in the same parallel phase; then the passing
# ones are timed one after the other (forward+backward picks the best). Then, if a trans variant passed at
# lang, gpu_kernel_check.py --gdr-only with NIRVANA_GDR_WY=trans and the fastest trans variant's switches
# exported: every delta-rule row (bf16 at both shapes, fp32 = 3xTF32 products, tails, both states, head
# dim 128 with a tail, determinism) through _bwd_wy_trans.
# Look for: every trans row "pass": true with errors near the default's; fwdbwd_ms at lang vs the default
# row of the same sweep (4.6 ms in run W; the difference is the WY kernel's alone, nothing else changes:
# _bwd_wy took 1.50 ms in Y2, fla's whole backward ~1.4); the mri rows not slower; check_wy.log all PASS
# (a FAIL or a fault: the variant stays off).
# Expected: tune ~3-4 min (12 checks on 12 processes, cold compiles; timing ~1 min), check ~1-2 min;
# hard limits: the tune 260 s, the check only if started before 270 s and then 120 s: 6.5 min at most.
# No carry needed (fla is not timed here).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
timeout 260 python3 benchmarks/gdr_tune.py --kind wy --shapes lang,mri --workers 12 --budget 240 \
  --out "$OUT/tune_wy.json" > "$OUT/tune_wy.log" 2>&1
stamp "tune $?"; tail -n 1 "$OUT/tune_wy.log"
# one line per variant: shape, switches, pass, worst error, forward / forward+backward ms
python3 - "$OUT/tune_wy.json" <<'PY' 2>/dev/null || tail -n 20 "$OUT/tune_wy.log"
import json, sys
for r in json.load(open(sys.argv[1]))["rows"]:
    worst = max((r.get("errors") or {"-": float("nan")}).values())
    print(r["shape"], r["env"] or "default", r.get("pass"), f"{worst:.1e}", r.get("fwd_ms"), r.get("fwdbwd_ms"),
          (r.get("error") or "")[-160:])
PY
# the fastest passing trans variant at lang (its switches, NIRVANA_GDR_WY=trans included); plain
# NIRVANA_GDR_WY=trans if the tune wrote no JSON (killed); nothing if no trans variant passed
BEST=NIRVANA_GDR_WY=trans
[ -f "$OUT/tune_wy.json" ] && BEST=$(python3 -c "import json,shlex,sys
rows=[r for r in json.load(open(sys.argv[1]))['rows'] if r['shape']=='lang' and r['env'].get('NIRVANA_GDR_WY')=='trans'
      and r.get('pass')]
rows.sort(key=lambda r: r.get('fwdbwd_ms') or 1e9)
print(' '.join(f'{k}={shlex.quote(v)}' for k,v in rows[0]['env'].items()) if rows else '')" "$OUT/tune_wy.json")
stamp "trans variant to check: ${BEST:-none}"
if [ -n "$BEST" ] && [ $(( $(date +%s) - T0 )) -lt 270 ]; then
  env $BEST timeout 120 python3 benchmarks/gpu_kernel_check.py --gdr-only --gdr-shapes mri,lang --skip-fla \
    --budget 100 --out "$OUT/check_wy.json" > "$OUT/check_wy.log" 2>&1
  stamp "check $?"; grep -E "^\| gdr|recommended_env|exported" "$OUT/check_wy.log"
fi
