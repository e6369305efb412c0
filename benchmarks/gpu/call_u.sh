#!/usr/bin/env bash
# GPU call U (nvidia-h200, one GPU), prepared, not yet run: the head-dim-128 forward variants against the
# default forward. gdr_tune.py --kind fwd-d128 at the language shape (B4 T4096 H16 D128, where we are
# 0.65x fla's forward) and the MRI shape (B8 T1600 H16 D64, to see that nothing regresses): the default
# plus NIRVANA_GDR_INV_KKT=block (_fwd_inv_block: one [64, 64] Kn Kn^T product per chunk) at 4 / 8 warps
# x 3xTF32 / TF32 product, NIRVANA_GDR_FWD_HALVES=1 (the state pass holds the state as two 64-row halves)
# x state V-block 32 / 64 x state warps 4 / 8, alone and with the block inverse, and the same V-blocks and
# warps without halves (17 variants at lang, 9 at mri: the halves do not exist at head dim 64). Every
# variant is checked against float64 first (o, final state, dq dk dv dg dbeta dh0, bf16, both states) and
# compiles its timed configuration in the same parallel phase; then the passing ones are timed one after
# the other (forward picks the best). Then gpu_kernel_check.py with the language shape's best forward
# switches (fp32 and bf16 at head dim 128 with a tail and both states, the 1.3B layer stack) before any
# default is flipped. No warm_kernels step: the check processes compile what the timing needs.
# Expected: tune ~4-6 min (26 checks on 14 processes, cold compiles; timing ~1 min), check ~2 min;
# hard limits: the tune 380 s, the check only if started before 400 s and then 140 s: 9 min at most. No carry needed (fla is not timed here).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
timeout 380 python3 benchmarks/gdr_tune.py --kind fwd-d128 --shapes lang,mri --workers 14 --budget 360 \
  --out "$OUT/tune_fwd_d128.json" > "$OUT/tune_fwd_d128.log" 2>&1
stamp "tune $?"; tail -n 1 "$OUT/tune_fwd_d128.log"
# the language shape's fastest passing forward switches (nothing if the default won or the tune failed)
BEST=$(python3 -c "import json,shlex,sys; b=json.load(open(sys.argv[1]))['best'].get('lang',{}).get('env',{});
print(' '.join(f'{k}={shlex.quote(v)}' for k,v in b.items()))" "$OUT/tune_fwd_d128.json" 2>/dev/null)
stamp "best at lang: ${BEST:-default}"
if [ -n "$BEST" ] && [ $(( $(date +%s) - T0 )) -lt 400 ]; then
  env $BEST timeout 140 python3 benchmarks/gpu_kernel_check.py --gdr-shapes mri,lang --skip-fla --budget 115 \
    --out "$OUT/check_fwd_d128.json" > "$OUT/check_fwd_d128.log" 2>&1
  stamp "check $?"; tail -n 3 "$OUT/check_fwd_d128.log"
fi
