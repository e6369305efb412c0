#!/usr/bin/env bash
# GPU call AI (nvidia-h200, one GPU): the rest of the transformer_backbone ablation's budget. In call AH its
# stages ran slower than planned (29-35 slices/s, not 43): stage 1 stopped at 1,051 of 1,200 steps and stage 3
# at 475 of 600 (time caps), stage 4 did not start. Stage 4 here continues from its stage-3 model with
# 1,274 steps = 3,800 - (1,051 + 1,000 + 475): the same total steps x batch as every four-stage method, same
# data (SNR 30-1000), noise-level FiLM, val every 250, best checkpoint kept.
# Carry: runs/lm/attention_only_rope/final (the RoPE transformer from call AH), .carry/stage4init_ai,
# .carry/anatomy, .whl/mri. Move benchmarks/results and nirvana_mri/weights/default out (64 MiB limit).
set -u
export PYTHONUNBUFFERED=1 NIRVANA_KERNELS_GDR=triton NIRVANA_KERNELS_TRIGGER=torch
T0=$(date +%s); W=runs/call_ai; mkdir -p "$W"
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/mri/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD NIRVANA_MNI152_T1=$PWD/.carry/anatomy/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz
python3 benchmarks/make_datasets.py --anatomy .carry/anatomy --out data --part train --jobs 6 \
  --train-snr 30:1000 > "$W/simulate.log" 2>&1
stamp "simulated $?"
python3 benchmarks/train_suite.py --train data/ixi/train data/ants/train data/mni/train \
  --val data/ixi/val data/mni/val --out runs/s4 --backbone nirvana_mri/weights/backbone \
  --init-dir .carry/stage4init_ai --noise-conditioning --methods transformer_backbone --gpus 0 \
  --steps "${STEPS:-1274}" --val-every 250 --max-minutes "${MAX_MINUTES:-6}" --batch-size 4 --workers 3 \
  > "$W/suite_s4.log" 2>&1
stamp "stage 4 $?"; cat "$W/suite_s4.log"
m=runs/s4/transformer_backbone; mkdir -p "$W/models/s4_transformer_backbone"
cp "$m"/summary.json "$m"/train_log.jsonl "$m"/stdout.log "$m"/command.json "$W/models/s4_transformer_backbone/" 2>/dev/null
cp -r "$m"/best "$W/models/s4_transformer_backbone/" 2>/dev/null; cp runs/s4/suite.json "$W/suite_s4.json" 2>/dev/null
tar czf "$OUT/results.tgz" "$W"
stamp "packed"; ls -la "$OUT"
