#!/usr/bin/env bash
# GPU call B, on nvidia-h200-x2 right after call A (one device call of at most 10 minutes):
# the quality benchmark's seven learned methods trained side by side at an equal step budget (set from
# call A's speed probe), then the multi-GPU fine-tuning speed-up. Carry: .carry (anatomy/, backbone/,
# probe.json) and .whl. Uses call A's data, backbone and kernel check when the machine is still warm.
#   TRAIN_SECONDS=360 KERNELS=auto bash benchmarks/gpu/call_b.sh
set -u
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
T0=$(date +%s); W=runs/call_b; mkdir -p "$W"
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/mri/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD NIRVANA_MNI152_T1=$PWD/.carry/anatomy/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz
export NIRVANA_KERNELS=${KERNELS:-auto}
BB=.carry/backbone; [ -f runs/call_a/bb/config.json ] && BB=runs/call_a/bb
PROBE=.carry/probe.json; [ -f runs/call_a/probe.json ] && PROBE=runs/call_a/probe.json
stamp "backbone $BB, probe $PROBE, kernels $NIRVANA_KERNELS"
if [ ! -f data/mni/manifest.json ] || [ ! -f data/ixi/manifest.json ]; then
  python3 benchmarks/make_datasets.py --anatomy .carry/anatomy --out data --part train --jobs 6 > "$W/simulate.log" 2>&1
  stamp "simulated $?"
fi
python3 benchmarks/train_suite.py --train data/ixi/train data/ants/train data/mni/train \
  --val data/ixi/val data/mni/val --out runs/suite --backbone "$BB" --steps-from-probe "$PROBE" \
  --seconds "${TRAIN_SECONDS:-360}" --batch-size 4 --workers 3 > "$W/suite.log" 2>&1
stamp "suite $?"
timeout 150 python3 benchmarks/finetune_scaling.py --train data/ixi/train data/mni/train --val data/mni/val \
  --init runs/suite/nirvana_mri/best --steps 60 --batch-size 4 --out "$W/scaling" > "$W/scaling.log" 2>&1
stamp "scaling $?"
for m in runs/suite/*/; do
  name=$(basename "$m"); mkdir -p "$W/models/$name"
  cp "$m"/summary.json "$m"/train_log.jsonl "$m"/stdout.log "$m"/command.json "$W/models/$name/" 2>/dev/null
  cp -r "$m"/best "$W/models/$name/" 2>/dev/null
done
cp runs/suite/suite.json "$W/" 2>/dev/null
tar cf - "$W" | split -b 15m - "$OUT/call_b.tar.part-"
stamp "packed"; ls -la "$OUT"; cat "$W/suite.log" | tail -n 12; tail -n 20 "$W/scaling.log"
