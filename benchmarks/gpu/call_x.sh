#!/usr/bin/env bash
# GPU call X (nvidia-h200, the rest of the session's device time): with the defaults of call W, the
# head-dim-64 shapes side by side with fla 0.2.2 (call W ran out in fla's first-call autotuning at the
# MRI shape), and the published 1.3B config's backbone, ours vs the published stand-in, in one process.
# Carry: .whl/flash_linear_attention-0.2.2-py3-none-any.whl.
set -u
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/flash_linear_attention-0.2.2-py3-none-any.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
timeout 330 python3 benchmarks/kernels.py --sections backbone,gdr --skip-reference --gdr-shapes mri,long \
  --backbones nirvana-1.3b:4:4096 --budget 240 --out "$OUT/kernels.json" --md "$OUT/kernels.md" > "$OUT/kernels.log" 2>&1
echo "kernels $?"; grep -E "^\{|^\[|^  \{" "$OUT/kernels.log" | cut -c1-230 | tail -20
