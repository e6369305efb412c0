#!/usr/bin/env bash
# GPU call AB (nvidia-h200): the backbone's new Triton layer kernels (short convolution, fused RMSNorm /
# gated RMSNorm, SwiGLU gate) on the GPU for the first time:
# (1) the full GPU check (every kernel vs the float64 / PyTorch reference at real shapes, incl. the new conv
#     and norm rows and the 1.3B layer stack);
# (2) conv_tune.py: the conv kernels' tile sizes, each checked first; its recommended_env feeds (5);
# (3) published_form.py: our layers vs fla's layer kernels in the published stand-in compute the same;
# (4) backbone_profile.py: where the backbone's GPU time goes now (1024x12 B8 T1600, 1.3B B4 T4096);
# (5) kernels.py: conv timing, and the backbone ours vs ours-torch-layers (before these kernels) vs the
#     published stand-in (now with fla's conv / norm / swiglu kernels), same process.
# Carry: .whl/flash_linear_attention-0.2.2-py3-none-any.whl.
set -u
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/flash_linear_attention-0.2.2-py3-none-any.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
timeout 165 python3 benchmarks/gpu_kernel_check.py --budget 150 --out "$OUT/check.json" > "$OUT/check.log" 2>&1
stamp "check $?"; grep -E "FAIL" "$OUT/check.log" | head; grep -c PASS "$OUT/check.log"
timeout 60 python3 benchmarks/conv_tune.py --budget 50 --out "$OUT/conv_tune.json" > "$OUT/conv_tune.log" 2>&1
stamp "conv tune $?"; grep -iE "recommend" "$OUT/conv_tune.log" | tail -2
timeout 25 python3 benchmarks/published_form.py > "$OUT/layers_check.json" 2> "$OUT/layers_check.log"
stamp "layers check $?"; cat "$OUT/layers_check.json"
timeout 90 python3 benchmarks/backbone_profile.py --configs 1024x12:8:1600,nirvana-1.3b:4:4096 \
  --out "$OUT/profile.json" > "$OUT/profile.log" 2>&1
stamp "profile $?"; grep -E "kernels|failed" "$OUT/profile.log"
CHECK=""; [ -s "$OUT/conv_tune.json" ] && CHECK="--check-json $OUT/conv_tune.json"
timeout 230 python3 benchmarks/kernels.py $CHECK --sections conv,backbone --backbone-extra ours-torch-layers \
  --backbones 1024x12:8:1600,1024x12:2:6400,nirvana-1.3b:4:4096 --budget 220 \
  --out "$OUT/kernels.json" --md "$OUT/kernels.md" > "$OUT/kernels.log" 2>&1
stamp "kernels $?"; grep -E "^\| (backbone|short_conv)" "$OUT/kernels.md" | cut -c1-200
