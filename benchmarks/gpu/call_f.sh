#!/usr/bin/env bash
# GPU call F (nvidia-h200): where does the delta rule fault at head dim 128? Every (shape, dtype,
# launch variant) in its own process with CUDA_LAUNCH_BLOCKING=1, then compute-sanitizer on the
# shortest faulting case. No carry needed.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version --format=csv > "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" >> "$OUT/gpu.txt"
(command -v compute-sanitizer && compute-sanitizer --version | tail -1) >> "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"
timeout 540 python3 benchmarks/gdr_fault_probe.py --out "$OUT/probe.json" --sanitize --budget 500 --workers 10 \
  2>&1 | tee "$OUT/probe.log" | cut -c1-400
