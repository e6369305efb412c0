#!/usr/bin/env bash
# GPU call BQ (nvidia-h200, one GPU), prepared in the ninth session (2026-11-29), not yet run.
# Carry: .whl/mri (fastmri and the data-layer wheels; rebuild with bash benchmarks/gpu/fetch_wheels.sh).
# finetune --cuda-graphs (nirvana_mri/backbone/graphs.py::GraphedTraining), first time on a GPU:
# benchmarks/graph_finetune.py runs the bundled model's training step (Trainer._train_step's: bf16 autocast,
# SSIM + L1, AdamW, clipping) eager and with the frozen backbone's training calls replayed through
# torch.cuda.make_graphed_callables (one per cascade), from the same weights on the same synthetic batch:
# ms per step, and how far losses and trained codec weights drift apart (bf16 replays of the same kernels should
# agree closely). At batch size 8 and 2 (the finetune default is 4).
# Expected ~3 min; hard limits 2 x 140 s. Two files back.
set -u
export PYTHONUNBUFFERED=1
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/mri/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
for batch in 8 2; do
  timeout 140 python3 benchmarks/graph_finetune.py --batch-size "$batch" --steps 20 \
    --out "$OUT/graph_finetune_b$batch.json" 2>&1 | tail -n 8 | cut -c1-600
  stamp "graph finetune batch $batch ${PIPESTATUS[0]}"
done
