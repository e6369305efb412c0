#!/usr/bin/env bash
# GPU call AD (nvidia-h200): call AC's model checks again (AC's stopped on an unset DEVICE global); see call_ac.sh.
# (1) the whole-model checks with the Triton layer kernels (triton vs torch backend: the MRI-size model, 4
#     layers, and the 1.3B layout, 2 layers, fp32, values and input gradients);
# (2) the backbone timed: ours (Triton layers, conv tiles from run AB's sweep now the defaults) vs
#     ours-torch-layers (the same model with its norms / SwiGLU gate / convolutions on the PyTorch path, as
#     before), same process; no fla (its first-call autotuning did not fit run AB).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
timeout 70 python3 - > "$OUT/model_check.json" 2> "$OUT/model_check.log" <<'PY'
import json, sys
sys.path.insert(0, "benchmarks")
import torch
import gpu_kernel_check
from gpu_kernel_check import check_model
gpu_kernel_check.DEVICE = torch.device("cuda")  # main() sets it otherwise
out = {}
for name, B, T, layers in (("1024x12", 2, 320, 4), ("nirvana-1.3b", 1, 320, 2)):
    errors, ok, thr = check_model(name, B, T, torch.float32, layers=layers)
    out[f"{name} ({layers} layers) B{B} T{T} fp32"] = {"errors": errors, "pass": ok, "threshold": thr}
    print(name, errors, ok, file=sys.stderr, flush=True)
print(json.dumps(out, indent=1))
PY
stamp "model check $?"; cat "$OUT/model_check.json"
