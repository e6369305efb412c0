#!/usr/bin/env bash
# GPU call AL (nvidia-h200, one GPU), prepared, not yet run: CUDA graphs for the frozen backbone forward,
# and where kernels.py's extra ~19 ms at 1024x12 B2 T6400 comes from (benchmarks/results/kernels.md, "The
# B2 T6400 forward is bound by the host": runs AJ/AK found ~26 ms of kernels but ~32 ms of host time to
# issue one forward's 143 Triton launches + 238 linears; kernels.py's do_bench said 51.5 ms at B2 T6400,
# 31.4 at B8 T1600, AK's plain loop 32.5 / 31.5 ms on a slightly different model).
# (1) kernels.py --backbone-extra ours-cudagraph at 1024x12 B8 T1600 and B2 T6400, no fla: the eager
#     "ours" row, then the same model's no-grad forward captured once in a torch.cuda.CUDAGraph (3 eager
#     warm-up forwards on a side stream, capture with a static input), checked against the eager forward on
#     the capture's input and on a fresh input copied into the static one (graph_equal, graph_max_abs_diff,
#     graph_rel_err; a check above 1e-2 relative or a raising capture is the row's "error", not timed), then
#     timed by replay with the same do_bench as the eager row (forward only: fwdbwd_ms is None by design).
# (2) launch_bound_probe.py, run AK's model (default) and kernels.py's own (--preset 1024x12: preset(...,
#     kernel_backend="triton"), seed 0, input randn * 0.5), each at 8x1600 and 2x6400, with --do-bench:
#     host-issue time, wall time and kernels.py's timer on the same model in one process.
# Look for: ours-cudagraph "graph_equal": true (or graph_rel_err ~0) and no "error" in the row notes of
# cudagraph.md; its fwd_ms vs the eager ours row of the same run: near the ~26 / ~21.5 ms of kernel time
# (profiles AJ / AB) if launches were the whole gap, the speedup is in the md's "vs ours" line. In the
# probes: if --preset's loop wall time is ~32 ms but its do_bench ~51 ms at 2x6400, the timer (L2 flush,
# per-call events) makes the difference; if the loop itself is ~51 ms, the model config does.
# Expected: kernels.py ~1.5-2 min (cold Triton compiles of the forward and backward kernels first, then
# ~10 s a shape), the probes ~30 s each (kernels cached by then); ~3 min in all. Hard limits: 190 + 90 + 90 s
# = 6.2 min at most, well within the call's 560 s.
# Call AE (the WY variant sweep + the gdr check, benchmarks/gpu/call_ae.sh, 6.5 min at most) stays its own
# call: both together could take 12.7 min, past one call's limit.
# No carry needed (fla is not used: --skip-fla). Outputs in $OUT/al.tgz (a call returns at most 8 files).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD NIRVANA_BENCH_TRACEBACK=1
W=/tmp/al; mkdir -p $W  # packed into $OUT/al.tgz at the end
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > "$W/gpu.txt" 2>&1
timeout 190 python3 benchmarks/kernels.py --skip-fla --sections backbone \
  --backbones 1024x12:8:1600,1024x12:2:6400 --backbone-extra ours-cudagraph --budget 170 \
  --out "$W/cudagraph.json" --md "$W/cudagraph.md" > "$W/cudagraph.log" 2>&1
stamp "kernels.py cudagraph $?"
grep -E "^\| backbone|^- backbone" "$W/cudagraph.md" 2>/dev/null || tail -n 30 "$W/cudagraph.log"
grep -E "FAIL|skip|failed" "$W/cudagraph.log" | head -n 10
for which in default preset; do  # run AK's model, then kernels.py's 1024x12
  timeout 90 python3 benchmarks/launch_bound_probe.py --shapes 8x1600,2x6400 --do-bench \
    $([ $which = preset ] && echo --preset 1024x12) > "$W/probe_$which.log" 2>&1
  stamp "probe $which $?"; grep -E "^(model|B[0-9]+ T[0-9]+:)" "$W/probe_$which.log" || tail -n 15 "$W/probe_$which.log"
done
tar czf "$OUT/al.tgz" -C "$W" . && stamp "packed"
