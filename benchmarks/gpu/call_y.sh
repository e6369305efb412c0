#!/usr/bin/env bash
# GPU call Y (nvidia-h200), prepared for the next session, not yet run: with the defaults of runs W/X,
# (1) the per-launch breakdown of our delta rule at the language shape (head dim 128: where our backward,
# ~3.3 ms, is 2.4x fla's) and the MRI shape, to see which backward kernel to attack next; (2) the
# 1024-wide 12-layer backbone at B8 T1600 and B2 T6400 (last timed in run D, before every retuning), ours
# vs the published stand-in in one process. Carry: .whl/flash_linear_attention-0.2.2-py3-none-any.whl.
set -u
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/flash_linear_attention-0.2.2-py3-none-any.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
timeout 330 python3 benchmarks/kernels.py --sections gdr-breakdown,backbone --gdr-shapes lang,mri \
  --backbones 1024x12:8:1600,1024x12:2:6400 --budget 300 --out "$OUT/kernels.json" --md "$OUT/kernels.md" \
  > "$OUT/kernels.log" 2>&1
echo "kernels $?"; grep -E "^\| (backbone|gdr_kernel)" "$OUT/kernels.md" | cut -c1-200
