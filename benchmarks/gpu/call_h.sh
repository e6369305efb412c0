#!/usr/bin/env bash
# GPU call H (nvidia-h200): launch-parameter sweep of our delta-rule forward (checked against the
# float64 reference, then timed), then the language-shape and published-1.3B rows of kernels.py with
# the fastest passing head-dim-128 variant. Carry: .whl (fla 0.2.2 wheel).
set -u
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/flash_linear_attention-0.2.2-py3-none-any.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
timeout 100 python3 benchmarks/warm_kernels.py --budget 90 > "$OUT/warm.log" 2>&1; stamp "warm $?"
timeout 230 python3 benchmarks/gdr_tune.py --shapes mri,lang --budget 215 --out "$OUT/tune.json" > "$OUT/tune.log" 2>&1
stamp "tune $?"; tail -n 1 "$OUT/tune.log"
python3 -c "
import json; d = json.load(open('$OUT/tune.json'))
json.dump({'recommended_env': d['best'].get('lang', {}).get('env', {})}, open('$OUT/lang_env.json', 'w'))"
timeout 230 python3 benchmarks/kernels.py --check-json "$OUT/lang_env.json" --sections gdr,backbone,gdr-breakdown \
  --gdr-shapes lang --backbones nirvana-1.3b:4:4096 --budget 210 --out "$OUT/kernels.json" --md "$OUT/kernels.md" \
  > "$OUT/kernels.log" 2>&1
stamp "kernels $?"; grep -E "^\| (gated|backbone|gdr_kernel)" "$OUT/kernels.md" | cut -c1-200
