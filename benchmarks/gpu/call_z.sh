#!/usr/bin/env bash
# GPU call Z (nvidia-h200, one GPU), prepared for the next session, not yet run: does more training close
# the clean-scan gap? A fourth stage of 1,000 steps (batch 4, the stage-2/3 data: SNR 30-1000) for the two
# headline contenders at once: nirvana_mri (from the bundled stage-3 model) and e2e_varnet_noise (from
# its stage-3 model, call V). The other methods stay at three stages: the report then flags the budget
# difference by itself (training_stages in each config.json). finetune now validates the starting model
# first, so best/ is never worse than stage 3.
# Carry: .carry/anatomy, .carry/stage4init (e2e_varnet_noise = /work/models_s3/e2e_varnet_noise; nirvana_mri
# continues from the bundled model via --init-bundled), .whl/mri. Move benchmarks/results out of the tree for
# this call (64 MiB limit); keep nirvana_mri/weights/ (the bundled backbone and model are needed).
set -u
export PYTHONUNBUFFERED=1 NIRVANA_KERNELS_GDR=triton NIRVANA_KERNELS_TRIGGER=torch
T0=$(date +%s); W=runs/call_z; mkdir -p "$W"
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
STEPS=${STEPS:-1000}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/mri/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD NIRVANA_MNI152_T1=$PWD/.carry/anatomy/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz
python3 benchmarks/make_datasets.py --anatomy .carry/anatomy --out data --part train --jobs 3 \
  --train-snr 30:1000 > "$W/simulate.log" 2>&1
stamp "simulated $?"; tail -n 3 "$W/simulate.log"
python3 benchmarks/train_suite.py --train data/ixi/train data/ants/train data/mni/train \
  --val data/ixi/val data/mni/val --out runs/suite --backbone nirvana_mri/weights/backbone \
  --init-dir .carry/stage4init --init-bundled nirvana_mri --noise-conditioning \
  --methods nirvana_mri,e2e_varnet_noise --gpus 0 \
  --steps "$STEPS" --val-every 250 --max-minutes "${MAX_MINUTES:-6.5}" --batch-size 4 --workers 2 \
  > "$W/suite.log" 2>&1
stamp "suite $?"; cat "$W/suite.log"
for m in runs/suite/*/; do
  name=$(basename "$m"); mkdir -p "$W/models/$name"
  cp "$m"/summary.json "$m"/train_log.jsonl "$m"/stdout.log "$m"/command.json "$W/models/$name/" 2>/dev/null
  cp -r "$m"/best "$W/models/$name/" 2>/dev/null
done
cp runs/suite/suite.json data/*/manifest.json "$W/" 2>/dev/null
tar cf - --exclude='*.safetensors' "$W" | gzip > "$OUT/results.tgz"
tar cf - "$W"/models/*/best | split -b 15m - "$OUT/models.tar.part-"
stamp "packed"; ls -la "$OUT"
