#!/usr/bin/env bash
# GPU call BR (nvidia-h200, one GPU), tenth session (2026-11-29). Carry: .whl (fla 0.2.2 and .whl/mri).
# Run BO's check of BP's new delta-rule defaults passed; its kernels.py steps hit limits set from nothing
# (150 / 120 s; BM's run of the same step took 224 s with a warm compile cache). Here:
# (1) kernels.py gdr + gdr-breakdown at lang, fla in the same process, the pre-BP head-dim-128 defaults as an
#     ours[...] row; limit 270 s (BM: 224 s). Its log goes to $OUT, and kernels.py now rewrites its JSON after
#     every row, so a kill keeps what was measured;
# (2) call BQ's first step: benchmarks/graph_finetune.py at batch 8 (finetune --cuda-graphs vs eager, same
#     weights and batch: ms per step, loss and weight drift); limit 150 s (never run: BJ's graph reconstruct
#     took 43 s in all).
set -u
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/flash_linear_attention-0.2.2-py3-none-any.whl .whl/mri/*.whl && export PYTHONPATH=/tmp/site:$PWD
PRE="NIRVANA_GDR_INV_DIAG=masked+NIRVANA_GDR_DQK_DG=score+NIRVANA_GDR_INV_KKT_PREC=tf32"
timeout 270 python3 benchmarks/kernels.py --sections gdr,gdr-breakdown --gdr-shapes lang --gdr-variants "$PRE" \
  --skip-reference --budget 255 --out "$OUT/kernels_lang.json" --md "$OUT/kernels_lang.md" > "$OUT/kernels_lang.log" 2>&1
stamp "kernels lang $?"
grep -E '^\| (gated|_fwd_inv|_bwd_dqk)' "$OUT/kernels_lang.md" 2>/dev/null | cut -c1-200
grep -E '^  \{' "$OUT/kernels_lang.log" | cut -c1-200 | tail -n 30
timeout 150 python3 benchmarks/graph_finetune.py --batch-size 8 --steps 20 --out "$OUT/graph_finetune_b8.json" \
  > "$OUT/graph_finetune_b8.log" 2>&1
stamp "graph finetune batch 8 $?"; tail -n 12 "$OUT/graph_finetune_b8.log" | cut -c1-600
