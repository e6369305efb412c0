#!/usr/bin/env bash
# GPU call V2 (nvidia-h200): call V's last step again, benchmarks/gpu_timing.py (it stopped in call V on
# software_versions importing sigpy, which the GPU machine does not have; fixed). Simulates the
# validation volumes again when the machine is fresh. Same carry as call V minus the training inits.
set -u
export PYTHONUNBUFFERED=1
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/mri/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD NIRVANA_MNI152_T1=$PWD/.carry/anatomy/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz
if [ ! -d data/ixi/val ]; then
  python3 benchmarks/make_datasets.py --anatomy .carry/anatomy --out data --part train --jobs 3 \
    --train-snr 30:1000 > "$OUT/simulate.log" 2>&1
  stamp "simulated $?"
fi
timeout 150 python3 benchmarks/gpu_timing.py --models-dir .carry/timing_models --data data/ixi/val --volumes 2 \
  --max-slices-per-volume 3 --repeats 3 --architecture-only --bundled-backbone-config .carry/bundled_config/config.json \
  --path-map /work/main/.carry/transformer=$PWD/.carry/transformer --out "$OUT/gpu_timing.json" > "$OUT/gpu_timing.log" 2>&1
stamp "gpu timing $?"; tail -n 20 "$OUT/gpu_timing.log"
