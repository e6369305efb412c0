#!/usr/bin/env bash
# GPU call V (nvidia-h200, one GPU): stage 3 of the quality suite's training for
# (a) transformer_backbone, the one method that did not fit the previous session (calls P/Q): its stage-2
#     model continues for the same 600 steps on the stage-2 data, with the noise-level FiLM like the other
#     nirvana_mri-class methods;
# (b) e2e_varnet_noise, the ablation that gives E2E-VarNet the same noise-level input: the stage-2
#     e2e_varnet model with the FiLM added (identity at start), 600 steps like every other stage-3 method;
# then (c) benchmarks/gpu_timing.py: seconds per slice on the GPU of every stage-3 model, architecture only
# (configs in .carry/timing_models, untrained weights: time does not depend on them), on simulated
# validation volumes, for the quality report's GPU column (refresh_report.py --gpu-timing).
# Then re-run benchmarks/quality.py on the CPU with the new folders in /work/models_s3.
# Carry: .carry/anatomy, .carry/stage3init_v (transformer_backbone, config pointing at .carry/transformer;
# e2e_varnet_noise = the stage-2 e2e_varnet), .carry/transformer, .carry/timing_models,
# .carry/bundled_config, .whl/mri. Move benchmarks/results, nirvana_mri/weights/backbone and
# nirvana_mri/weights/default out of the tree for this call (64 MiB limit); neither method needs them.
set -u
export PYTHONUNBUFFERED=1 NIRVANA_KERNELS_GDR=triton NIRVANA_KERNELS_TRIGGER=torch
T0=$(date +%s); W=runs/call_v; mkdir -p "$W"
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
STEPS=${STEPS:-600}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/mri/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD NIRVANA_MNI152_T1=$PWD/.carry/anatomy/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz
python3 benchmarks/make_datasets.py --anatomy .carry/anatomy --out data --part train --jobs 3 \
  --train-snr 30:1000 > "$W/simulate.log" 2>&1
stamp "simulated $?"; tail -n 3 "$W/simulate.log"
python3 benchmarks/train_suite.py --train data/ixi/train data/ants/train data/mni/train \
  --val data/ixi/val data/mni/val --out runs/suite --backbone .carry/bundled_config \
  --init-dir .carry/stage3init_v --noise-conditioning \
  --methods transformer_backbone,e2e_varnet_noise --transformer-backbone .carry/transformer --gpus 0 \
  --steps "$STEPS" --val-every 300 --max-minutes "${MAX_MINUTES:-4.6}" --batch-size 4 --workers 2 \
  > "$W/suite.log" 2>&1
stamp "suite $?"; cat "$W/suite.log"
timeout 100 python3 benchmarks/gpu_timing.py --models-dir .carry/timing_models --data data/ixi/val --volumes 2 \
  --max-slices-per-volume 3 --architecture-only --bundled-backbone-config .carry/bundled_config/config.json \
  --path-map /work/main/.carry/transformer=$PWD/.carry/transformer --out "$OUT/gpu_timing.json" > "$W/gpu_timing.log" 2>&1
stamp "gpu timing $?"; tail -n 4 "$W/gpu_timing.log"
for m in runs/suite/*/; do
  name=$(basename "$m"); mkdir -p "$W/models/$name"
  cp "$m"/summary.json "$m"/train_log.jsonl "$m"/stdout.log "$m"/command.json "$W/models/$name/" 2>/dev/null
  cp -r "$m"/best "$W/models/$name/" 2>/dev/null
done
cp runs/suite/suite.json data/*/manifest.json "$W/" 2>/dev/null
tar cf - --exclude='*.safetensors' "$W" | gzip > "$OUT/results.tgz"
tar cf - "$W"/models/*/best | split -b 15m - "$OUT/models.tar.part-"
stamp "packed"; ls -la "$OUT"
