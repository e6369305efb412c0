#!/usr/bin/env bash
# GPU call L, on nvidia-h200-x2. GPU 0: stage 2 of the quality suite's training, part 2 of 2
# (transformer_backbone, unet, e2e_varnet continue from their stage-1 models for the same 1,000 steps
# on SNR 30-1000 data as call K). GPU 1, at the same time: the delta rule's forward split into
# _fwd_inv + _fwd_wy vs the fused _fwd_prep (gdr_tune.py --kind prep: every variant checked against
# float64, then timed), the full GPU kernel check (fp32 head dim 128 fallback, the 1.3B model row), and
# ours vs fla 0.2.2 side by side in one process (kernels.py) with the new defaults.
# Carry: .carry/anatomy, .carry/stage2 (stage-1 models; transformer_backbone's config points at
# .carry/transformer), .carry/transformer, .whl/mri, .whl/flash_linear_attention-0.2.2-py3-none-any.whl.
# The packaged backbone weights and the HTML/npz reports are moved out of the working tree for this
# call (64 MiB limit); nothing here needs them.
set -u
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
T0=$(date +%s); W=runs/call_l; K=runs/call_l_kernels; mkdir -p "$W" "$K"
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
STEPS=${STEPS:-1000}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/mri/*.whl .whl/flash_linear_attention-0.2.2-py3-none-any.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD NIRVANA_MNI152_T1=$PWD/.carry/anatomy/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz
(
  export CUDA_VISIBLE_DEVICES=1 FLA_DISABLE_BACKEND_DISPATCH=1
  timeout 140 python3 benchmarks/gdr_tune.py --kind prep --shapes mri,long,lang --budget 125 \
    --out "$K/tune_prep.json" > "$K/tune_prep.log" 2>&1; echo "tune exit $?" >> "$K/tune_prep.log"
  timeout 130 python3 benchmarks/gpu_kernel_check.py --budget 115 --out "$K/check.json" > "$K/check.log" 2>&1
  echo "check exit $?" >> "$K/check.log"
  timeout 250 python3 benchmarks/kernels.py --sections gdr,backbone,gdr-breakdown \
    --backbones nirvana-1.3b:4:4096,1024x12:8:1600 --budget 235 --out "$K/kernels.json" --md "$K/kernels.md" \
    > "$K/kernels.log" 2>&1; echo "kernels exit $?" >> "$K/kernels.log"
) & KERN=$!
export NIRVANA_KERNELS_GDR=triton NIRVANA_KERNELS_TRIGGER=torch
python3 benchmarks/make_datasets.py --anatomy .carry/anatomy --out data --part train --jobs 3 \
  --train-snr 30:1000 > "$W/simulate.log" 2>&1
stamp "simulated $?"; cat "$W/simulate.log"
python3 benchmarks/train_suite.py --train data/ixi/train data/ants/train data/mni/train \
  --val data/ixi/val data/mni/val --out runs/suite --backbone nirvana_mri/weights/backbone \
  --init-dir .carry/stage2 --methods e2e_varnet,transformer_backbone,unet --gpus 0 \
  --steps "$STEPS" --val-every 500 --max-minutes "${MAX_MINUTES:-7.6}" --batch-size 4 --workers 5 \
  > "$W/suite.log" 2>&1
stamp "suite $?"; cat "$W/suite.log"
for m in runs/suite/*/; do
  name=$(basename "$m"); mkdir -p "$W/models/$name"
  cp "$m"/summary.json "$m"/train_log.jsonl "$m"/stdout.log "$m"/command.json "$W/models/$name/" 2>/dev/null
  cp -r "$m"/best "$W/models/$name/" 2>/dev/null
done
cp runs/suite/suite.json "$W/" 2>/dev/null
tar cf - --exclude='*.safetensors' "$W" | gzip > "$OUT/results.tgz"
tar cf - "$W"/models/*/best | split -b 15m - "$OUT/models.tar.part-"
stamp "training packed"
wait $KERN; stamp "kernels done"
tar czf "$OUT/kernels.tgz" "$K"
tail -n 2 "$K/tune_prep.log"; grep -E "PASS|FAIL" "$K/check.log" | cut -c1-160 | tail -n 30
grep -E "^\| (gated|backbone)" "$K/kernels.md" | cut -c1-200; ls -la "$OUT"
