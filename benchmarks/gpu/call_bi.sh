#!/usr/bin/env bash
# GPU call BI (nvidia-h200, one GPU), prepared in the eighth session (2026-11-29), not yet run. Nothing to carry.
# (1) Head-dim-64 precision at the MRI backbone's own shapes: gdr_tune.py --kind precision (16-bit vs TF32
#     operands, and the default as a noise estimate) at mri-h5 (B8 T1600 H5: training batch) and slice (B1 T1600
#     H5: one slice in reconstruct), then the kernels.py shapes mri and long (runs BD/BE: 16-bit 1.41x faster
#     fwd+bwd at long, slower at mri). Decides NIRVANA_GDR_PRECISION=auto's choice at head dim 64.
# (2) The bundled MRI backbone end to end: kernels.py backbone rows for the `bundled` preset at B8 and B1 T1600
#     (eager and CUDA-graph forward): what a user's reconstruct and finetune see per slice, and how host-bound.
# (3) NIRVANA_GDR_WY_OPS=bf16 at D128 in kernels.py's own sequence, beside the default in one process.
# (4) The training-step graph's zero gradients: graph_grad_order_probe.py with --prime (a forward graph first)
#     at B8 T1600 and B2 T6400, then with torch.cuda.graph's capture_error_mode thread_local and relaxed.
# Expected ~6.5 min; hard limits 200 + 130 + 90 + 4 x 40 s. Seven files come back through $OUT (the device
# returns at most 8); logs stay in /tmp/bi and their key lines go to stdout.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
W=/tmp/bi; mkdir -p "$W"
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
timeout 200 python3 benchmarks/gdr_tune.py --kind precision --shapes mri-h5,slice,mri,long --budget 190 \
  --out "$OUT/tune_precision.json" > "$W/tune_precision.log" 2>&1
stamp "precision $?"; grep -E '"fwd_ms"|recommended|"pass": false' "$W/tune_precision.log" | cut -c1-240
timeout 130 python3 benchmarks/kernels.py --skip-fla --sections backbone --backbones bundled:8:1600,bundled:1:1600 \
  --backbone-extra ours-cudagraph --budget 120 --out "$OUT/backbone_bundled.json" --md "$W/backbone_bundled.md" \
  > "$W/backbone_bundled.log" 2>&1
stamp "bundled $?"; grep -E "^\| backbone" "$W/backbone_bundled.md" | cut -c1-200 || tail -n 20 "$W/backbone_bundled.log"
timeout 90 python3 benchmarks/kernels.py --sections gdr --gdr-shapes lang --gdr-variants NIRVANA_GDR_WY_OPS=bf16 \
  --skip-fla --skip-reference --budget 80 --out "$OUT/gdr_wy_ops.json" --md "$W/gdr_wy_ops.md" > "$W/gdr_wy_ops.log" 2>&1
stamp "wy-ops $?"; grep -E '"op"' "$W/gdr_wy_ops.log" | cut -c1-200
for shape in 1024x12:8:1600 1024x12:2:6400; do
  timeout 40 python3 benchmarks/graph_grad_order_probe.py --prime --backbone "$shape" \
    --out "$OUT/probe_prime_${shape//[:]/_}.json" 2>&1 | cut -c1-200 | tail -5
  stamp "probe --prime $shape"
done
for mode in thread_local relaxed; do
  timeout 40 python3 benchmarks/graph_grad_order_probe.py --error-mode "$mode" --out "$OUT/probe_$mode.json" 2>&1 \
    | cut -c1-200 | tail -5
  stamp "probe --error-mode $mode"
done
