#!/usr/bin/env bash
# One GPU call of at most 10 minutes, from the repository root, with the corpus carried in .carry/corpus:
#   bash scripts/gpu_session.sh both      # 2 GPUs: (a) bundled backbone on GPU 0, (b) LM ablation on GPU 1
#   bash scripts/gpu_session.sh bundled   # (a) alone (any GPU count)
#   bash scripts/gpu_session.sh lm        # (b) alone
# Results under $OUT (at most 8 files): bb/{config.json, model-0000{1,2}-of-00002.safetensors,
# model.safetensors.index.json, README.md, log.jsonl} and lm/{lm.json, lm.md}. Work folders under runs/
# (kept while the machine stays warm: the same call again resumes from runs/bundled/checkpoint).
set -u
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
WHAT=${1:-both}
OUT=${OUT:-runs/out}
CALL_SECONDS=${CALL_SECONDS:-570}  # everything below ends within this many seconds of the script's start
LM_MINUTES=${LM_MINUTES:-5}        # training minutes per ablation model (all four run at once)
mkdir -p "$OUT" runs
T0=$(date +%s)
NGPU=$(python3 -c 'import torch; print(torch.cuda.device_count())')
nvidia-smi --query-gpu=index,name,memory.used,memory.total --format=csv,noheader
echo "GPUs: $NGPU; what: $WHAT"
if [ ! -f .carry/corpus/train.bin ]; then echo "no .carry/corpus/train.bin: carry .carry/corpus"; exit 2; fi
if [ "$WHAT" = both ] && [ "$NGPU" -lt 2 ]; then
  echo "one GPU only: run 'bundled' and 'lm' in two calls"; exit 2
fi
LM_GPU=0; [ "$WHAT" = both ] && LM_GPU=1

# Preflight (~30 s): do the Triton kernels train? Otherwise fall back to the PyTorch reference kernels.
KERNELS=auto
if ! timeout 120 python3 -m nirvana_mri.commands.pretrain --corpus .carry/corpus --config bundled \
    --out runs/preflight --steps 2 --warmup 1 --batch-size 2 --context 1024 --eval-every 0 --eval-bytes 2048 \
    --checkpoint-every 0 --no-export --device cuda:0 --kernels auto > runs/preflight.log 2>&1; then
  echo "preflight with --kernels auto FAILED; using --kernels torch"; tail -n 15 runs/preflight.log; KERNELS=torch
else
  grep -m1 "^model:" runs/preflight.log
fi
rm -rf runs/preflight
echo "preflight done at $(( $(date +%s) - T0 ))s; kernels=$KERNELS"
LEFT_MIN=$(python3 -c "print(round(($CALL_SECONDS - $(( $(date +%s) - T0 )) - 15) / 60, 2))")
BB_MINUTES=${BB_MINUTES:-$LEFT_MIN}   # the bundled run's wall-clock budget (ends with checkpoint, eval, export)
echo "budgets: bundled $BB_MINUTES min, ablation deadline $LEFT_MIN min"

PIDS=""
if [ "$WHAT" = both ] || [ "$WHAT" = bundled ]; then
  python3 -m nirvana_mri.commands.pretrain --corpus .carry/corpus --config bundled --out runs/bundled \
    --context 1024 --batch-size 32 --steps 100000 --fit-steps-to-budget --max-minutes "$BB_MINUTES" \
    --warmup 200 --lr 2e-3 --eval-every 1000 --checkpoint-every 1000 --eval-bytes 262144 --log-every 100 \
    --device cuda:0 --kernels "$KERNELS" --resume --final-dir "$OUT/bb" --final-shard-mb 15 \
    --summary-json runs/bundled/summary.json > runs/bundled.console.log 2>&1 &
  PIDS="$PIDS $!"
fi
if [ "$WHAT" = both ] || [ "$WHAT" = lm ]; then
  python3 benchmarks/lm.py --corpus .carry/corpus --devices "$LM_GPU" --minutes-per-model "$LM_MINUTES" \
    --deadline-minutes "$LEFT_MIN" --kernels "$KERNELS" --runs-dir runs/lm --results-dir "$OUT/lm" > runs/lm.console.log 2>&1 &
  PIDS="$PIDS $!"
fi
for pid in $PIDS; do wait "$pid"; echo "process $pid exited with $? at $(( $(date +%s) - T0 ))s"; done
[ -f runs/bundled/log.jsonl ] && [ -d "$OUT/bb" ] && cp runs/bundled/log.jsonl "$OUT/bb/log.jsonl"
for f in runs/bundled.console.log runs/lm.console.log; do
  [ -f "$f" ] && { echo "===== $f"; grep -v "^step " "$f" | tail -n 40; grep "^step " "$f" | tail -n 3; }
done
echo "total $(( $(date +%s) - T0 ))s"; ls -la "$OUT" "$OUT"/* 2>/dev/null
