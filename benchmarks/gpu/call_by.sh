#!/usr/bin/env bash
# GPU call BY (nvidia-h200, one GPU), prepared in the tenth session (2026-11-29), not yet run. Nothing to carry.
# Hypothesis for the zero replayed input gradients of the manual training-step capture (graph_grad_order_probe.py,
# runs BH-BP; kernels.py's 1.3B ours-cudagraph-train row, whose second check input gets rel. err 1.0): the leaf's
# autograd node keeps the stream of its first backward, the warm-ups' side stream, while torch.cuda.graph captures
# on its own stream, so the gradient's last step runs outside the graph (pytorch/pytorch issue 137483 shows a
# leaf's AccumulateGrad staying on the warm-up stream). Tests: capture on the warm-ups' stream; or warm up on
# another leaf, so the static input's node is made in the capture.
# (1) the probe at 1024x12 B2 T1600 as in BP (expect zeros), then with --same-stream, then with --fresh-leaf;
#     limits 70 s each (BP: 30 s);
# (2) kernels.py's 1.3B graph rows with --capture-on-warmup-stream; limit 120 s (BT's three backbones: 42 s);
# (3) gdr_profile.py at B8 T1600 H16 D64: is the delta rule's eager forward+backward (1.38 ms in BS, its launches
#     0.86 ms) waiting on the host? Wall time vs device busy time per step, kernels and host ops; limit 90 s
#     (compiles the delta rule: ~30 s).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
for flag in "" --same-stream --fresh-leaf; do
  timeout 70 python3 benchmarks/graph_grad_order_probe.py --backbone 1024x12:2:1600 $flag \
    --out "$OUT/probe${flag:-_default}.json" 2>&1 | grep -E '^\{' | cut -c1-200
  stamp "probe ${flag:-default} ${PIPESTATUS[0]}"
done
timeout 120 python3 benchmarks/kernels.py --skip-fla --sections backbone --backbones nirvana-1.3b:4:4096 \
  --backbone-extra ours-cudagraph,ours-cudagraph-train --capture-on-warmup-stream --budget 110 \
  --out "$OUT/backbone_13b_same_stream.json" --md "$OUT/backbone_13b_same_stream.md" > "$OUT/backbone_13b.log" 2>&1
stamp "kernels 1.3B $?"; grep -E '^\| backbone' "$OUT/backbone_13b_same_stream.md" 2>/dev/null | cut -c1-200
grep -E 'graph_grad_rel_err|error' "$OUT/backbone_13b_same_stream.json" | head -n 6
timeout 90 python3 benchmarks/gdr_profile.py --out "$OUT/gdr_profile_mri.json" 2>&1 | cut -c1-200 | tail -n 30
stamp "gdr profile ${PIPESTATUS[0]}"
