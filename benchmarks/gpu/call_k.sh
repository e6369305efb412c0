#!/usr/bin/env bash
# GPU call K, on nvidia-h200-x2 (the x4 kind was not lent): stage 2 of the quality suite's training, part 1 of 2. Every learned
# method continues from its 1,200-step stage-1 model (SNR 30-40 data, calls B/C) for the same number
# of steps on data simulated over SNR 30-1000 (make_datasets.py --train-snr 30:1000; same subject
# splits), two methods per GPU. Part 2 (call L) trains transformer_backbone, unet and e2e_varnet the
# same way: the 64 MiB carry limit does not fit every stage-1 model plus the transformer backbone.
# Carry: .carry/anatomy, .carry/stage1 (stage-1 models of no_trigger, random_backbone, codecs_only;
# nirvana_mri starts from the packaged default model, which is its stage-1 model), .whl/mri.
set -u
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export NIRVANA_KERNELS_GDR=triton NIRVANA_KERNELS_TRIGGER=torch
T0=$(date +%s); W=runs/call_k; mkdir -p "$W"
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
STEPS=${STEPS:-1000}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/mri/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD NIRVANA_MNI152_T1=$PWD/.carry/anatomy/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz
python3 benchmarks/make_datasets.py --anatomy .carry/anatomy --out data --part train --jobs 3 \
  --train-snr 30:1000 > "$W/simulate.log" 2>&1
stamp "simulated $?"; cat "$W/simulate.log"
python3 benchmarks/train_suite.py --train data/ixi/train data/ants/train data/mni/train \
  --val data/ixi/val data/mni/val --out runs/suite --backbone nirvana_mri/weights/backbone \
  --init-dir .carry/stage1 --init-bundled nirvana_mri \
  --methods nirvana_mri,nirvana_mri_random_backbone,nirvana_mri_no_trigger,codecs_only --gpus 0,1 \
  --steps "$STEPS" --val-every 500 --max-minutes "${MAX_MINUTES:-7.9}" --batch-size 4 --workers 5 \
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
