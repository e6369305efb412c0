#!/usr/bin/env bash
# GPU call S (nvidia-h200), prepared for the next session, not yet run: the Trigger v2 kernels
# (NIRVANA_TRIGGER_IMPL=v2) swept with benchmarks/trigger_tune.py (every variant checked against the
# reference at the three shapes first, then timed side by side with the published einsum form, best of
# two rounds, plus a CUDA-graph forward time that separates GPU time from host overhead), then
# kernels.py's trigger section with the recommended settings, in a fresh process.
# A first sweep ran in this session's helper run T (kernels/call_t_trigger_tune.json), before the
# weight-layout cache and the graph timing were added.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
timeout 300 python3 benchmarks/trigger_tune.py --out "$OUT/trigger_tune.json" --budget 280 --rounds 2 --workers 15 \
  > "$OUT/trigger_tune.log" 2>&1
stamp "trigger tune $?"; tail -n 5 "$OUT/trigger_tune.log"
