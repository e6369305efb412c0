#!/usr/bin/env bash
# GPU call C, on nvidia-h200-x4: the quality suite's methods around pretrained backbones (same 1200-step
# budget as call B), then the multi-GPU fine-tuning speed-up. Kernels as in call B (Triton delta rule,
# PyTorch Trigger: the Trigger kernel's GPU check did not finish in time). Carry: .carry/anatomy,
# .carry/backbone (call B's Nirvana), .carry/transformer (call A's), .carry/models, .whl.
#   GPU 0: nirvana_mri   GPU 1: nirvana_mri_no_trigger   GPU 2: transformer_backbone, then 2+3: scaling
set -u
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export NIRVANA_KERNELS_GDR=triton NIRVANA_KERNELS_TRIGGER=torch
T0=$(date +%s); W=runs/call_c; mkdir -p "$W"
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/mri/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD NIRVANA_MNI152_T1=$PWD/.carry/anatomy/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz
if [ ! -f data/mni/manifest.json ] || [ ! -f data/ixi/manifest.json ]; then
  python3 benchmarks/make_datasets.py --anatomy .carry/anatomy --out data --part train --jobs 3 > "$W/simulate.log" 2>&1
  stamp "simulated $?"
fi
SUITE="python3 benchmarks/train_suite.py --train data/ixi/train data/ants/train data/mni/train
  --val data/ixi/val data/mni/val --out runs/suite --backbone .carry/backbone
  --transformer-backbone .carry/transformer --steps 1200 --val-every 400 --max-minutes 6.5 --batch-size 4 --workers 3"
$SUITE --gpus 0,1 --methods nirvana_mri,nirvana_mri_no_trigger > "$W/suite_nirvana.log" 2>&1 & NIR=$!
$SUITE --gpus 2 --methods transformer_backbone > "$W/suite_tf.log" 2>&1
stamp "transformer suite $?"
CUDA_VISIBLE_DEVICES=2,3 timeout 200 python3 benchmarks/finetune_scaling.py --train data/ixi/train data/mni/train \
  --val data/mni/val --init .carry/models/nirvana_mri_random_backbone/best --steps 60 --batch-size 4 \
  --out "$W/scaling" > "$W/scaling.log" 2>&1
stamp "scaling $?"
wait $NIR; stamp "nirvana suite $?"
for m in runs/suite/*/; do
  name=$(basename "$m"); mkdir -p "$W/models/$name"
  cp "$m"/summary.json "$m"/train_log.jsonl "$m"/stdout.log "$m"/command.json "$W/models/$name/" 2>/dev/null
  cp -r "$m"/best "$W/models/$name/" 2>/dev/null
done
tar cf - --exclude='*.safetensors' "$W" | gzip > "$OUT/results.tgz"
tar cf - "$W"/models/*/best | split -b 15m - "$OUT/models.tar.part-"
stamp "packed"; ls -la "$OUT"; tail -n 3 "$W/suite_nirvana.log" "$W/suite_tf.log"; tail -n 12 "$W/scaling.log"
