#!/usr/bin/env bash
# GPU call Y2 (nvidia-h200): call Y (per-launch breakdown of our delta rule at the language and MRI shapes;
# the 1024x12 backbone re-timed, ours vs the published stand-in) plus benchmarks/backbone_profile.py: where
# the whole backbone's GPU time goes by kernel family (1024x12 B8 T1600 and the 1.3B config B4 T4096), with
# and without kernels.py's torch.compile'd norms. Carry: .whl/flash_linear_attention-0.2.2-py3-none-any.whl.
set -u
export PYTHONUNBUFFERED=1 FLA_DISABLE_BACKEND_DISPATCH=1
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/flash_linear_attention-0.2.2-py3-none-any.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
timeout 200 python3 benchmarks/backbone_profile.py --configs 1024x12:8:1600,nirvana-1.3b:4:4096 --compiled-norms \
  --out "$OUT/profile.json" > "$OUT/profile.log" 2>&1
stamp "profile $?"; grep -E "kernels|failed" "$OUT/profile.log"
timeout 280 python3 benchmarks/kernels.py --sections gdr-breakdown,backbone --gdr-shapes lang,mri \
  --backbones 1024x12:8:1600,1024x12:2:6400 --budget 250 --out "$OUT/kernels.json" --md "$OUT/kernels.md" \
  > "$OUT/kernels.log" 2>&1
stamp "kernels $?"; grep -E "^\| (backbone|gdr_kernel)" "$OUT/kernels.md" | cut -c1-200
