#!/usr/bin/env bash
# GPU call BJ (nvidia-h200, one GPU), prepared in the eighth session (2026-11-29), not yet run.
# Carry: .whl/mri (fastmri and the data-layer wheels the bundled model's codecs import).
# reconstruct --cuda-graphs (nirvana_mri/backbone/graphs.py), first time on a GPU: benchmarks/graph_reconstruct.py
# runs reconstruct's own run_model (bf16 autocast) on a synthetic 16-coil 256 x 256 scan, 16 slices, at batch
# sizes 1, 4 and 8: eager vs the backbone replayed from CUDA graphs in one process, seconds per slice and the
# relative error of the graphed reconstruction against eager (each graph is also checked against eager on two
# inputs inside GraphedForward; a refused shape shows in `refused` / `warnings`). run_model is what
# `nirvana-mri reconstruct` calls per file, so this is the CLI's path without the file reading and writing.
# Expected ~2-3 min (Triton compiles for the bundled model's shapes first); hard limit 300 s. One file back.
set -u
export PYTHONUNBUFFERED=1
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/mri/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
timeout 300 python3 benchmarks/graph_reconstruct.py --batch-sizes 1,4,8 --slices 16 --repeats 3 \
  --out "$OUT/graph_reconstruct.json" 2>&1 | tail -n 20 | cut -c1-400
stamp "graph reconstruct ${PIPESTATUS[0]}"
