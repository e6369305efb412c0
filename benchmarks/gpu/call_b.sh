#!/usr/bin/env bash
# GPU call B, on nvidia-h200-x4 (one device call of at most 10 minutes), after call A showed that
# (1) the PyTorch reference kernels went to NaN under bf16 autocast (fixed: they now run in float32)
# and (2) our Triton delta rule passes at head dim 64 while head dim 128 faults. Side by side:
#   GPU 0: kernel check without the head-dim-128 shape (fresh process), then the LM ablation
#   GPU 1: pretraining of the bundled Nirvana backbone
#   GPU 2, 3: the quality suite's methods that need no pretrained Nirvana, at a fixed step budget
#   CPU: simulation of the MRI training data first
# Kernels: Triton delta rule (verified at head dim 64, bf16), PyTorch Trigger (not yet verified on GPU).
# Carry: .carry (corpus/, anatomy/, bundled_config/) and .whl.
set -u
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export NIRVANA_KERNELS_GDR=triton NIRVANA_KERNELS_TRIGGER=torch
T0=$(date +%s); W=runs/call_b; mkdir -p "$W"
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
P="python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir"
$P --upgrade --target /tmp/site .whl/*.whl .whl/mri/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD NIRVANA_MNI152_T1=$PWD/.carry/anatomy/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz
STEPS=${STEPS:-1200}
python3 benchmarks/make_datasets.py --anatomy .carry/anatomy --out data --part train --jobs 3 \
  > "$W/simulate.log" 2>&1 &
SIM=$!
CUDA_VISIBLE_DEVICES=1 python3 -m nirvana_mri.commands.pretrain --corpus .carry/corpus --config bundled \
  --out runs/bundled --context 1024 --batch-size 32 --steps 100000 --fit-steps-to-budget --max-minutes 7.6 \
  --warmup 200 --lr 2e-3 --eval-every 1000 --checkpoint-every 100000 --eval-bytes 262144 --log-every 100 \
  --device cuda:0 --kernels auto --final-dir "$W/bb" --final-shard-mb 15 \
  --summary-json "$W/bb_summary.json" > "$W/bb.log" 2>&1 & PRE=$!
(
  export CUDA_VISIBLE_DEVICES=0 FLA_DISABLE_BACKEND_DISPATCH=1
  timeout 110 python3 benchmarks/gpu_kernel_check.py --gdr-shapes mri,long --skip-fla --budget 90 \
    --out "$W/check.json" > "$W/check.log" 2>&1; echo "check exit $?" >> "$W/check.log"
  timeout 390 python3 benchmarks/lm.py --corpus .carry/corpus --devices 0 --minutes-per-model 4.5 \
    --deadline-minutes 6.3 --kernels auto --runs-dir runs/lm --results-dir "$W/lm" > "$W/lm.log" 2>&1
) & GP0=$!
wait $SIM; stamp "simulate $?"
python3 benchmarks/train_suite.py --train data/ixi/train data/ants/train data/mni/train \
  --val data/ixi/val data/mni/val --out runs/suite --backbone .carry/bundled_config \
  --gpus 2,3 --steps "$STEPS" --val-every 400 --max-minutes 6.6 \
  --methods nirvana_mri_random_backbone,codecs_only,unet,e2e_varnet \
  --batch-size 4 --workers 3 > "$W/suite.log" 2>&1
stamp "suite $?"
wait $PRE; stamp "pretrain $?"; wait $GP0; stamp "gpu0 $?"
for name in bb; do for f in "$W/$name"/*.safetensors; do [ -f "$f" ] && cp "$f" "$OUT/$name-$(basename "$f")"; done; done
for m in runs/suite/*/; do
  name=$(basename "$m"); mkdir -p "$W/models/$name"
  cp "$m"/summary.json "$m"/train_log.jsonl "$m"/stdout.log "$m"/command.json "$W/models/$name/" 2>/dev/null
  cp -r "$m"/best "$W/models/$name/" 2>/dev/null
done
cp runs/suite/suite.json "$W/" 2>/dev/null
tar cf - --exclude='*.safetensors' "$W" | gzip > "$OUT/results.tgz"
tar cf - "$W"/models/*/best | split -b 15m - "$OUT/models.tar.part-"
stamp "packed"; ls -la "$OUT"; tail -n 9 "$W/suite.log"; tail -n 2 "$W/bb.log"; tail -n 3 "$W/check.log"
