#!/usr/bin/env bash
# GPU call A, on nvidia-h200-x4 (or -x2: then without GPUs 2 and 3), one device call of at most 10
# minutes, from the repository root. Carry: .carry (corpus/ and anatomy/) and .whl. Side by side:
#   GPU 0: Triton warm-up, correctness check at real shapes, kernel benchmark, then the MRI speed probe
#   GPU 1: pretraining of the bundled Nirvana backbone (PyTorch reference kernels: correct by
#          construction; our Triton kernels are still being checked on GPU 0 while it runs)
#   GPU 2: an attention-only Transformer of matched size, pretrained the same way for the same time
#          (the quality benchmark's transformer_backbone)
#   GPU 3: the language-model ablation (benchmarks/lm.py: four variants at once)
#   CPU:   simulation of the MRI training data (kept on the machine for call B while it stays warm)
# $OUT receives the bf16 backbone shards (bb-*, tf-*) and results.tgz (logs, JSON, Markdown).
set -u
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
T0=$(date +%s); W=runs/call_a; mkdir -p "$W"
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
P="python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir"
$P --upgrade --target /tmp/site .whl/*.whl .whl/mri/*.whl && $P --target /tmp/site06 .whl/fla06/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD NIRVANA_MNI152_T1=$PWD/.carry/anatomy/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz
nvidia-smi --query-gpu=index,name,driver_version,clocks.sm,clocks.mem,memory.total --format=csv > "$W/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" >> "$W/gpu.txt"
stamp "installed"

NGPU=$(python3 -c 'import torch; print(torch.cuda.device_count())')
pretrain() {  # $1 GPU, $2 name, rest: extra arguments
  local gpu=$1 name=$2; shift 2
  CUDA_VISIBLE_DEVICES=$gpu python3 -m nirvana_mri.commands.pretrain --corpus .carry/corpus --config bundled \
    --out "runs/$name" --context 1024 --batch-size 32 --steps 100000 --fit-steps-to-budget --max-minutes 7.5 \
    --warmup 200 --lr 2e-3 --eval-every 1000 --checkpoint-every 100000 --eval-bytes 262144 --log-every 100 \
    --device cuda:0 --kernels torch --final-dir "$W/$name" --final-shard-mb 15 \
    --summary-json "$W/${name}_summary.json" "$@" > "$W/$name.log" 2>&1
}
pretrain 1 bb & PRE=$!
TF=""; LM=""
if [ "$NGPU" -ge 4 ]; then
  pretrain 2 tf --layer-mix attention_only --intermediate-size 768 & TF=$!
  CUDA_VISIBLE_DEVICES=3 timeout 510 python3 benchmarks/lm.py --corpus .carry/corpus --devices 0 \
    --minutes-per-model 5.5 --deadline-minutes 8.0 --kernels torch --runs-dir runs/lm --results-dir "$W/lm" \
    > "$W/lm.log" 2>&1 & LM=$!
fi
python3 benchmarks/make_datasets.py --anatomy .carry/anatomy --out data --part train --jobs 3 \
  > "$W/simulate.log" 2>&1 &
SIM=$!

export CUDA_VISIBLE_DEVICES=0 FLA_DISABLE_BACKEND_DISPATCH=1
timeout 95 python3 benchmarks/warm_kernels.py --budget 85 > "$W/warm.log" 2>&1; stamp "warm $?"
timeout 125 python3 benchmarks/gpu_kernel_check.py --budget 100 --out "$W/check.json" > "$W/check.log" 2>&1
stamp "check $?"
timeout 185 python3 benchmarks/kernels.py --check-json "$W/check.json" --fla-alt /tmp/site06 --budget 165 \
  --out "$W/kernels.json" --md "$W/kernels.md" > "$W/kernels.log" 2>&1; stamp "kernels $?"
python3 -c "from nirvana_mri.backbone import NirvanaModel, preset; NirvanaModel(preset('bundled')).save_pretrained('runs/probe_backbone')"
timeout 75 python3 benchmarks/mri_probe.py --backbone runs/probe_backbone --out "$W/probe.json" > "$W/probe.log" 2>&1
stamp "probe $?"
NIRVANA_KERNELS=torch timeout 25 python3 benchmarks/mri_probe.py --backbone runs/probe_backbone \
  --methods nirvana_mri --out "$W/probe_torch_kernels.json" > "$W/probe_torch.log" 2>&1; stamp "probe torch $?"

wait $SIM; stamp "simulate $?"; du -sh data/* >> "$W/simulate.log" 2>&1
for p in $PRE $TF $LM; do wait "$p"; stamp "process $p exit $?"; done
for name in bb tf; do
  for f in "$W/$name"/*.safetensors; do [ -f "$f" ] && cp "$f" "$OUT/$name-$(basename "$f")"; done
done
tar czf "$OUT/results.tgz" --exclude='*.safetensors' "$W"
stamp "packed"; ls -la "$OUT"; tail -n 2 "$W/bb.log" "$W/tf.log" "$W/lm.log" 2>/dev/null
head -c 3000 "$W/kernels.md" 2>/dev/null
