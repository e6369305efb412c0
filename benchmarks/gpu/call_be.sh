#!/usr/bin/env bash
# GPU call BE (nvidia-h200, one GPU), eighth session (2026-11-29): the defaults changed after runs BB-BC.
# (1) trigger_tune.py --grid defaults: the new default Trigger (v2, 16-bit operands in its contractions for
#     16-bit inputs, backward launch 32,8,128) beside v1 and run S's v2 (float32 operands, backward 64,8,128)
#     and the published einsum form in the same process, now also forward+backward replayed from a CUDA graph
#     (fwdbwd_graph_ms: GPU time without launch overhead, for both sides of the >= 5x ratio).
# (2) kernels.py backbone rows with the new defaults (Trigger v2 + bf16 operands; delta rule auto precision):
#     1024x12 at B8 T1600 and B2 T6400, nirvana-1.3b at B4 T4096; eager, CUDA-graph forward and training step.
# (3) kernels.py delta rule at head dim 64 (MRI, long scan): the default (TF32 operands) beside 16-bit operands
#     again (run BD: 16-bit faster at the long-scan shape only, 1.589 vs 2.236 ms fwd+bwd).
# Nothing to carry. Hard limits 200 + 250 + 100 s.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
timeout 200 python3 benchmarks/trigger_tune.py --grid defaults --budget 190 --rounds 2 \
  --out "$OUT/trigger_defaults.json" > "$OUT/trigger_defaults.log" 2>&1
stamp "trigger $?"; grep -E '^\{"shape"' "$OUT/trigger_defaults.log" | cut -c1-420
timeout 250 python3 benchmarks/kernels.py --skip-fla --sections backbone \
  --backbones 1024x12:8:1600,nirvana-1.3b:4:4096,1024x12:2:6400 --backbone-extra ours-cudagraph,ours-cudagraph-train \
  --budget 235 --out "$OUT/backbone_defaults.json" --md "$OUT/backbone_defaults.md" > "$OUT/backbone_defaults.log" 2>&1
stamp "backbone $?"; grep -E "^\| backbone" "$OUT/backbone_defaults.md" | cut -c1-220
timeout 100 python3 benchmarks/kernels.py --sections gdr --gdr-shapes mri,long --skip-fla \
  --skip-reference --budget 90 --out "$OUT/gdr_d64.json" --md "$OUT/gdr_d64.md" > "$OUT/gdr_d64.log" 2>&1
stamp "gdr $?"; grep -E '"op"' "$OUT/gdr_d64.log" | cut -c1-200
