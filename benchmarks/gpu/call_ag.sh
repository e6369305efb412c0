#!/usr/bin/env bash
# GPU call AG (nvidia-h200, one GPU): the fourth training stage for the learned methods call Z left at three
# stages, so that the quality report compares every method at equal budget (1,200 + 1,000 + 600 + 1,000 steps x
# batch 4): nirvana_mri_no_trigger, nirvana_mri_random_backbone, codecs_only and e2e_varnet continue from their
# stage-3 models for 1,000 steps on the stage-2/3 data (SNR 30-1000), the same command as call Z, all four at
# once on one GPU. (unet and transformer_backbone go in call AH: the carry limit.)
# Carry: .carry/anatomy, .carry/stage4init_ag (the four stage-3 models from /work/models_s3), .whl/mri. Move
# benchmarks/results and nirvana_mri/weights/default out of the tree for this call (64 MiB limit).
set -u
export PYTHONUNBUFFERED=1 NIRVANA_KERNELS_GDR=triton NIRVANA_KERNELS_TRIGGER=torch
T0=$(date +%s); W=runs/call_ag; mkdir -p "$W"
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
STEPS=${STEPS:-1000}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/mri/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD NIRVANA_MNI152_T1=$PWD/.carry/anatomy/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz
python3 benchmarks/make_datasets.py --anatomy .carry/anatomy --out data --part train --jobs 4 \
  --train-snr 30:1000 > "$W/simulate.log" 2>&1
stamp "simulated $?"; tail -n 3 "$W/simulate.log"
python3 benchmarks/train_suite.py --train data/ixi/train data/ants/train data/mni/train \
  --val data/ixi/val data/mni/val --out runs/suite --backbone nirvana_mri/weights/backbone \
  --init-dir .carry/stage4init_ag --noise-conditioning \
  --methods nirvana_mri_no_trigger,nirvana_mri_random_backbone,codecs_only,e2e_varnet --gpus 0 \
  --steps "$STEPS" --val-every 250 --max-minutes "${MAX_MINUTES:-7.3}" --batch-size 4 --workers 2 \
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
