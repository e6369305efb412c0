#!/usr/bin/env bash
# GPU call AO (nvidia-h200, one GPU), prepared, not yet run: a CUDA graph of the frozen backbone's training
# step. Run AL found the eager forward launch-bound (host issue time = wall time; the graph replay took the
# forward from 32.1 to 21.5 ms at 1024x12 B8 T1600, 47.5 to 26.3 ms at B2 T6400) and the eager forward+backward
# moving with the host (122 ms in AL vs 96.7 ms in AC at B8 T1600): the backward is launch-bound too
# (benchmarks/results/kernels.md, "CUDA graphs lift the frozen forward to its kernel time (run AL)").
# kernels.py --backbone-extra ours-cudagraph,ours-cudagraph-train at 1024x12 B8 T1600 and B2 T6400, no fla:
# the eager "ours" row (fwd, fwd+bwd to inputs_embeds), the forward graph of run AL again (same-run
# baseline), then the new row: ours' fwdbwd (model(inputs_embeds=x).last_hidden_state, backward of the same
# dy to x, weights frozen) captured once in one torch.cuda.CUDAGraph (3 eager fwd+bwd warm-ups on a side
# stream; the backward is torch.autograd.grad to the static input with a static dy), checked against eager
# forward+backward on the capture's input and on a fresh one copied into the static input (output:
# graph_max_abs_diff / graph_rel_err; input gradient: graph_grad_max_abs_diff / graph_grad_rel_err;
# graph_equal bitwise over both; above 1e-2 relative or a raising capture is the row's "error", not timed),
# then timed by replay with the same do_bench as the eager row (fwdbwd_ms; fwd_ms None by design).
# Look for: no "error" on the ours-cudagraph-train rows in the row notes of graphtrain.md, graph_grad_rel_err
# ~0 (bf16; a few 1e-3 would still pass if a backward kernel uses atomics, 0.0 means bit-identical); its
# fwdbwd_ms vs the eager ours fwdbwd of the same run in the "vs ours" speedup line (AL: 122 / 100 ms eager);
# the kernel time of the step is not measured here: if the replay lands far below eager, launches were the
# gap in the backward as well. reserved_growth_gib ~ the step's peak activations (AC: 9.1 GiB peak fwd+bwd
# at B8 T1600). A capture failure (log: "FAIL ours-cudagraph-train: capture failed: ...", traceback with
# NIRVANA_BENCH_TRACEBACK=1) names the op that is not capturable in the backward.
# Expected: ~1-1.5 min (AL's kernels.py took 30 s; cold Triton compiles of the forward and backward kernels
# first, then ~15 s a shape with both graph rows). Hard limit: timeout 240 s (+ packing), well under the
# call's 9 minutes.
# No carry needed (fla is not used: --skip-fla). Outputs in $OUT/ao.tgz (a call returns at most 8 files).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD NIRVANA_BENCH_TRACEBACK=1
W=/tmp/ao; mkdir -p $W  # packed into $OUT/ao.tgz at the end
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > "$W/gpu.txt" 2>&1
timeout 240 python3 benchmarks/kernels.py --skip-fla --sections backbone \
  --backbones 1024x12:8:1600,1024x12:2:6400 --backbone-extra ours-cudagraph,ours-cudagraph-train --budget 210 \
  --out "$W/graphtrain.json" --md "$W/graphtrain.md" > "$W/graphtrain.log" 2>&1
stamp "kernels.py graph-train $?"
grep -E "^\| backbone|^- backbone" "$W/graphtrain.md" 2>/dev/null || tail -n 40 "$W/graphtrain.log"
grep -E "FAIL|skip|failed|Error" "$W/graphtrain.log" | head -n 20
tar czf "$OUT/ao.tgz" -C "$W" . && stamp "packed"
