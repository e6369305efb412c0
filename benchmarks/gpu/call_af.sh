#!/usr/bin/env bash
# GPU call AF (nvidia-h200), prepared for the next session, not yet run: what runs AB-AD left open.
# (1) the whole-model checks with every Triton kernel in place, incl. the 1.3B layout (AD's hit its limit);
# (2) the 1024x12 B2 T6400 forward that got SLOWER with the Triton layer kernels in run AC (59.0 vs
#     49.8 ms; B8 T1600 got 1.43x faster): timed again in two fresh processes, then profiled both ways;
# (3) published_form.py's layer check (fla's causal_conv1d / rms_norm / rms_norm_gated / swiglu in the
#     stand-in compute what ours do), then the backbone ours vs the published stand-in WITH fla's layers at
#     1024x12 B8 T1600 (fla's first-call autotuning needs the time: AB ran out of it).
# Carry: .whl/flash_linear_attention-0.2.2-py3-none-any.whl.
set -u
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1
W=/tmp/af; mkdir -p $W  # packed into $OUT/af.tgz at the end (the call returns at most 8 files)
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/flash_linear_attention-0.2.2-py3-none-any.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
timeout 150 python3 benchmarks/gpu_kernel_check.py --model-only --skip-fla --out "$W/model_check.json" \
  > "$W/model_check.log" 2>&1
stamp "model check $?"; grep -E "PASS|FAIL" "$W/model_check.log"
for order in "" ours-torch-layers; do  # ours alone in a fresh process, then ours + ours-torch-layers: is the gap repeatable?
  timeout 60 python3 benchmarks/kernels.py --skip-fla --sections backbone --backbones 1024x12:2:6400 \
    --backbone-extra "$order" --budget 55 --out "$W/t6400${order:+_extra}.json" > "$W/t6400${order:+_extra}.log" 2>&1
  stamp "t6400 ${order:-ours only} $?"; grep -E "^\| backbone" "$W/t6400${order:+_extra}.md" | head -3
done
timeout 90 python3 benchmarks/backbone_profile.py --configs 1024x12:2:6400 --variants ours,ours-torch-layers \
  --out "$W/profile_t6400.json" > "$W/profile_t6400.log" 2>&1
stamp "profile $?"; grep -E "kernels|failed" "$W/profile_t6400.log"
timeout 90 python3 benchmarks/published_form.py > "$W/layers_check.json" 2> "$W/layers_check.log"
stamp "layers check $?"; cat "$W/layers_check.json"
timeout 150 python3 benchmarks/kernels.py --sections backbone --backbones 1024x12:8:1600 --budget 140 \
  --out "$W/published.json" --md "$W/published.md" > "$W/published.log" 2>&1
stamp "published $?"; grep -E "^\| backbone" "$W/published.md"
tar czf "$OUT/af.tgz" -C "$W" . && stamp "packed"
