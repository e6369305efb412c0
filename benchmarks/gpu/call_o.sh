#!/usr/bin/env bash
# GPU call O (nvidia-h200), prepared for the next session, not yet run: (1) packed variable-length
# batches (cu_seqlens) on the GPU at head dims 64 and 128, bf16 and fp32, each in its own process
# (a CUDA fault stays in its process), with timings of packed vs padded vs a per-sequence loop;
# (2) the whole backbone re-timed with the split forward (published 1.3B config and 1024x12, ours vs
# the published stand-in in one process); (3) the per-launch breakdown after the split.
# Carry: .whl/flash_linear_attention-0.2.2-py3-none-any.whl.
set -u
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/flash_linear_attention-0.2.2-py3-none-any.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
LENS=1600,37,4096,64,1,2000
for dim in 64 128; do
  for dtype in bfloat16 float32; do
    extra=""; [ "$dtype" = bfloat16 ] && extra="--time"
    timeout 120 python3 benchmarks/gdr_varlen_check.py --lens $LENS --heads 16 --dim $dim --dtype $dtype $extra \
      --json "$OUT/varlen_d${dim}_${dtype}.json" > "$OUT/varlen_d${dim}_${dtype}.log" 2>&1
    stamp "varlen D$dim $dtype exit $?"; tail -n 3 "$OUT/varlen_d${dim}_${dtype}.log"
  done
done
timeout 280 python3 benchmarks/kernels.py --sections backbone,gdr-breakdown --gdr-shapes mri,lang \
  --backbones nirvana-1.3b:4:4096,1024x12:8:1600 --budget 265 --out "$OUT/kernels.json" --md "$OUT/kernels.md" \
  > "$OUT/kernels.log" 2>&1
stamp "kernels $?"; grep -E "^\| (backbone|gdr_kernel)" "$OUT/kernels.md" | cut -c1-200
