#!/usr/bin/env bash
# GPU call V (nvidia-h200, one GPU), prepared for the next session, not yet run: stage 3 of the quality
# suite's training for transformer_backbone, the one method that did not fit this session (calls P/Q):
# its stage-2 model continues for the same 600 steps on the stage-2 data, with the noise-level FiLM like
# the other nirvana_mri-class methods. Then re-run benchmarks/quality.py on the CPU with its new folder in
# /work/models_s3 (or wherever the stage-3 models live) so every method is at equal budget.
# Carry: .carry/anatomy, .carry/stage3init_v (its stage-2 model, config pointing at .carry/transformer),
# .carry/transformer (the attention-only backbone), .whl/mri. Move benchmarks/results out of the tree for
# this call (64 MiB limit).
set -u
export PYTHONUNBUFFERED=1 NIRVANA_KERNELS_GDR=triton NIRVANA_KERNELS_TRIGGER=torch
T0=$(date +%s); W=runs/call_v; mkdir -p "$W"
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
STEPS=${STEPS:-800}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/mri/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD NIRVANA_MNI152_T1=$PWD/.carry/anatomy/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz
python3 benchmarks/make_datasets.py --anatomy .carry/anatomy --out data --part train --jobs 3 \
  --train-snr 30:1000 > "$W/simulate.log" 2>&1
stamp "simulated $?"; tail -n 3 "$W/simulate.log"
python3 benchmarks/train_suite.py --train data/ixi/train data/ants/train data/mni/train \
  --val data/ixi/val data/mni/val --out runs/suite --backbone nirvana_mri/weights/backbone \
  --init-dir .carry/stage3init_v --noise-conditioning \
  --methods transformer_backbone --transformer-backbone .carry/transformer --gpus 0 \
  --steps "$STEPS" --val-every 400 --max-minutes "${MAX_MINUTES:-6.6}" --batch-size 4 --workers 2 \
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
