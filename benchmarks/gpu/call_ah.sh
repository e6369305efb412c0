#!/usr/bin/env bash
# GPU call AH (nvidia-h200, one GPU): a fair transformer_backbone ablation, and unet's fourth stage.
# The old transformer_backbone was a causal attention-only LM without positional encoding (as the published
# attention branch); it barely learned language (3.59 bits/byte vs 1.97, lm.md) and its MRI codecs ended below
# codecs_only: a strawman. Here: (1) benchmarks/lm.py pretrains attention_only_rope (same layers + RoPE on q/k,
# same 9.34 M used parameters, the same 422 steps x 32 x 1024 bytes as every variant in lm.md); (2) its MRI
# codecs train through it with the same four stages as every other method: 1,200 steps on the stage-1 data
# (SNR 30-40), then 1,000 + 600 + 1,000 on the SNR 30-1000 data, the noise-level FiLM from stage 3 on, batch 4,
# lr 5e-4, best validation checkpoint carried forward; (3) meanwhile unet continues from its stage-3 model for
# its fourth stage (1,000 steps), as call AG did for four other methods.
# Carry: .carry/corpus_xz (the byte corpus, xz), .carry/anatomy, .carry/stage4init_ah (unet stage 3), .whl/mri.
# Move benchmarks/results and nirvana_mri/weights/default out of the tree (64 MiB limit).
set -u
export PYTHONUNBUFFERED=1 NIRVANA_KERNELS_GDR=triton NIRVANA_KERNELS_TRIGGER=torch
T0=$(date +%s); W=runs/call_ah; mkdir -p "$W"
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
left() { echo $(( ${DEADLINE:-575} - ($(date +%s) - T0) )); }  # seconds left before packing
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/mri/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD NIRVANA_MNI152_T1=$PWD/.carry/anatomy/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz
mkdir -p runs/corpus && xz -dc .carry/corpus_xz/corpus.tar.xz | tar xf - -C runs/corpus
# the two datasets on the CPU while the LM pretrains on the GPU
python3 benchmarks/make_datasets.py --anatomy .carry/anatomy --out data1 --part train --jobs 4 \
  > "$W/simulate_stage1.log" 2>&1 &
SIM1=$!
python3 benchmarks/make_datasets.py --anatomy .carry/anatomy --out data --part train --jobs 4 \
  --train-snr 30:1000 > "$W/simulate.log" 2>&1 &
SIM=$!
timeout 150 python3 benchmarks/lm.py --corpus runs/corpus/corpus --devices 0 --variants attention_only_rope \
  --steps 422 --minutes-per-model 4.5 --deadline-minutes 2.3 --kernels auto --runs-dir runs/lm \
  --results-dir "$W/lm" > "$W/lm.log" 2>&1
stamp "lm $?"; tail -n 4 "$W/lm.log"; cat "$W/lm/lm.md" 2>/dev/null | head -14
TB=runs/lm/attention_only_rope/final
wait $SIM; stamp "simulated (SNR 30-1000) $?"
python3 benchmarks/train_suite.py --train data/ixi/train data/ants/train data/mni/train \
  --val data/ixi/val data/mni/val --out runs/suite_unet --backbone nirvana_mri/weights/backbone \
  --init-dir .carry/stage4init_ah --methods unet --gpus 0 --steps 1000 --val-every 250 --max-minutes 7 \
  --batch-size 4 --workers 2 > "$W/suite_unet.log" 2>&1 &
UNET=$!
wait $SIM1; stamp "simulated (stage-1 data) $?"
[ -d "$TB" ] || { echo "no pretrained transformer at $TB"; }
# stage: name, data, steps, val-every, cap minutes, init dir (or -), noise flag
stage() {
  local s=$1 data=$2 steps=$3 every=$4 cap=$5 init=$6 noise=$7
  local secs; secs=$(left); [ "$secs" -lt 40 ] && { stamp "stage $s skipped: $secs s left"; return 1; }
  local capm; capm=$(python3 -c "print(min($cap, ($secs - 15) / 60))")
  python3 benchmarks/train_suite.py --train $data/ixi/train $data/ants/train $data/mni/train \
    --val $data/ixi/val $data/mni/val --out runs/s$s --backbone nirvana_mri/weights/backbone \
    --transformer-backbone "$TB" --methods transformer_backbone --gpus 0 --steps "$steps" --val-every "$every" \
    --max-minutes "$capm" --batch-size 4 --workers 3 ${init:+--init-dir $init} $noise > "$W/suite_s$s.log" 2>&1
  stamp "stage $s $? (cap $capm min)"; cat "$W/suite_s$s.log"
  mkdir -p runs/init$((s + 1)) && ln -sfn "$PWD/runs/s$s/transformer_backbone/best" runs/init$((s + 1))/transformer_backbone
}
stage 1 data1 1200 400 2.7 "" "" && stage 2 data 1000 500 2.3 runs/init2 "" \
  && stage 3 data 600 300 1.5 runs/init3 --noise-conditioning && stage 4 data 1000 500 2.3 runs/init4 --noise-conditioning
wait $UNET; stamp "unet $?"; cat "$W/suite_unet.log"
for m in runs/s*/transformer_backbone runs/suite_unet/unet; do
  [ -d "$m" ] || continue
  name=$(basename "$(dirname "$m")")_$(basename "$m"); mkdir -p "$W/models/$name"
  cp "$m"/summary.json "$m"/train_log.jsonl "$m"/stdout.log "$m"/command.json "$W/models/$name/" 2>/dev/null
  cp -r "$m"/best "$W/models/$name/" 2>/dev/null
done
mkdir -p "$W/backbone" && cp -r "$TB" "$W/backbone/" 2>/dev/null
cp runs/s*/suite.json "$W/" 2>/dev/null; for s in 1 2 3 4; do cp runs/s$s/suite.json "$W/suite_s$s.json" 2>/dev/null; done
cp data/*/manifest.json "$W/" 2>/dev/null
tar cf - --exclude='*.safetensors' "$W" | gzip > "$OUT/results.tgz"
tar cf - "$W"/models/*/best "$W/backbone" | split -b 15m - "$OUT/models.tar.part-"
stamp "packed"; ls -la "$OUT"
