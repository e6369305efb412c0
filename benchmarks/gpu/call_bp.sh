#!/usr/bin/env bash
# GPU call BP (nvidia-h200, one GPU), prepared in the ninth session (2026-11-29), not yet run. Nothing to carry.
# (1) gdr_tune.py --kind inv at lang, mri and long: _fwd_inv_block's diagonal inverses on [4, 16, 16] blocks
#     (NIRVANA_GDR_INV_DIAG=blocks: 2,488 vs 6,040 instructions for sm_90 offline) and Kn Kn^T in the 16-bit inputs'
#     own type (NIRVANA_GDR_INV_KKT_PREC=input), each checked against float64 with both states, then timed in one
#     process per shape. Becomes the default where it wins and passes (then re-check with gpu_kernel_check.py).
# (2) gdr_tune.py --kind dqk-dg at the same shapes: _bwd_dqk's dG without the score P (NIRVANA_GDR_DQK_DG=rowsum:
#     offline ptxas 0 B spilled at head dim 128 / 8 warps vs 484 B, 196 vs 784 B at head dim 64 / 4 warps), ranked
#     by forward+backward;
# (3) graph_grad_order_probe.py --eager-after at 1024x12 B2 T1600: do the zero replayed gradients (runs BH, BI, BL)
#     come from the probe's eager .backward() steps before its capture? (BK's bisection, with none, replayed exact
#     gradients.)
# Expected ~6.5 min; hard limits 200 + 150 + 60 s. Three files back.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
timeout 200 python3 benchmarks/gdr_tune.py --kind inv --shapes lang,mri,long --budget 190 \
  --out "$OUT/tune_inv.json" > /tmp/tune.log 2>&1
stamp "tune $?"; grep -E '"fwd_ms"|"pass": false|error' /tmp/tune.log | cut -c1-220
timeout 150 python3 benchmarks/gdr_tune.py --kind dqk-dg --shapes lang,mri,long --budget 140 \
  --out "$OUT/tune_dqk_dg.json" > /tmp/tune_dg.log 2>&1
stamp "tune dqk-dg $?"; grep -E '"fwdbwd_ms"|"pass": false|error' /tmp/tune_dg.log | cut -c1-220
timeout 60 python3 benchmarks/graph_grad_order_probe.py --eager-after --backbone 1024x12:2:1600 \
  --out "$OUT/probe_eager_after.json" 2>&1 | cut -c1-200
stamp "probe --eager-after"
