#!/usr/bin/env bash
# GPU call N (nvidia-h200, the machine of call M still warm, /tmp/site from it): call M's kernels.py
# ran out of its 285 s at the language shape (fla's first-call autotuning at head dim 128), so the
# language shape alone, ours vs fla 0.2.2 in one process, then the 1.3B backbone if time is left.
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1 PYTHONPATH=/tmp/site:$PWD
timeout 195 python3 benchmarks/kernels.py --sections gdr,backbone --skip-reference --gdr-shapes lang \
  --backbones nirvana-1.3b:4:4096 --budget 185 --out "$OUT/kernels.json" --md "$OUT/kernels.md" > "$OUT/kernels.log" 2>&1
echo "exit $?"; grep -v "^|" "$OUT/kernels.log" | cut -c1-260 | head -30
