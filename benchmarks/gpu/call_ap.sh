#!/usr/bin/env bash
# GPU calls AP / AQ (nvidia-h200, one GPU): a third cascade for the bundled default, with and without the
# backbone's LoRA (attention-branch) parts tuned (issue 5). On CPU, the six-stage model grown to three
# cascades (the third a copy of the second with its decoder's last layer zeroed, NirvanaMRI.grown_state) is
# already better before any training: the zero update still adds one projection onto the coil model and one
# data-consistency step. Each VARIANT (name=JSON model arguments over the continued model's, ';'-separated)
# trains as its own `nirvana-mri finetune` process, all at once on the one GPU (the eager step is host-bound:
# benchmarks/results/kernels.md), batch 8, on the stage-2..6 data (same subjects, SNR 30-1000), validation
# every 250 steps (the starting model first), best checkpoint kept.
# INIT: stageN = stage N's model of the same variant left on this warm machine (runs/sN_<variant>), else the
# carried .carry/stageN/nirvana_mri (the six-stage default for stage 6).
# Carry: .carry/anatomy, .whl/mri, .carry/stageN. Outputs: $OUT/s<STAGE>_<variant>.tgz (best model, logs), one
# per variant (one archive of two models passed the device's size limit for returned files in call AS).
# Calls AS / AT (sixth session): STAGE=10 INIT=stage8 then STAGE=11 INIT=stage10, MAX_MINUTES=7,
# VARIANTS='casc4={"num_cascades": 4};casc5={"num_cascades": 5}' (four and five cascades, grown from stage 8).
set -u
export PYTHONUNBUFFERED=1 NIRVANA_KERNELS_GDR=triton NIRVANA_KERNELS_TRIGGER=torch
STAGE=${STAGE:-7}; INIT=${INIT:-stage6}; STEPS=${STEPS:-2000}; MAX_MINUTES=${MAX_MINUTES:-7}
VARIANTS=${VARIANTS:-'casc3={"num_cascades": 3};casc3_lora={"num_cascades": 3, "tune": "lora"}'}
T0=$(date +%s); W=runs/call_stage$STAGE; mkdir -p "$W"
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/mri/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD NIRVANA_MNI152_T1=$PWD/.carry/anatomy/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz
D=runs/data
if ls $D/mni/val/*.h5 >/dev/null 2>&1; then stamp "data kept from the last call"
else
  python3 benchmarks/make_datasets.py --anatomy .carry/anatomy --out $D --part train --jobs 8 \
    --train-snr 30:1000 > "$W/simulate.log" 2>&1
  stamp "simulated $?"
fi
N=${INIT#stage}; pids=()
IFS=';' read -ra specs <<< "$VARIANTS"
for spec in "${specs[@]}"; do
  name=${spec%%=*}; args=${spec#*=}; init=runs/init_$name
  rm -rf "$init"; mkdir -p "$init"
  if [ -f runs/s${N}_$name/nirvana_mri/best/config.json ]; then cp -r runs/s${N}_$name/nirvana_mri/best "$init/nirvana_mri"
  elif [ -f .carry/stage$N/nirvana_mri/config.json ]; then cp -r .carry/stage$N/nirvana_mri "$init/nirvana_mri"
  else echo "no stage-$N model for $name"; exit 2; fi
  stamp "$name: from $(readlink -f $init/nirvana_mri) with $args"
  python3 benchmarks/train_suite.py --train $D/ixi/train $D/ants/train $D/mni/train \
    --val $D/ixi/val $D/mni/val --out runs/s${STAGE}_$name --backbone nirvana_mri/weights/backbone \
    --init-dir "$init" --init-model-args "$args" --noise-conditioning --methods nirvana_mri --gpus 0 \
    --seed "$STAGE" --steps "$STEPS" --val-every 250 --max-minutes "$MAX_MINUTES" --batch-size 8 --workers 5 \
    > "$W/suite_$name.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
stamp "stage $STAGE done"
for spec in "${specs[@]}"; do
  name=${spec%%=*}; m=runs/s${STAGE}_$name/nirvana_mri; o="$W/models/$name"; mkdir -p "$o"
  tail -n 3 "$W/suite_$name.log"
  cp "$m"/summary.json "$m"/train_log.jsonl "$m"/stdout.log "$m"/command.json "$o/" 2>/dev/null
  cp -r "$m"/best "$o/" 2>/dev/null; cp runs/s${STAGE}_$name/suite.json "$o/" 2>/dev/null
  echo "$name:"; grep -h '"val"' "$m"/train_log.jsonl | cut -c1-110
done
for spec in "${specs[@]}"; do name=${spec%%=*}; tar czf "$OUT/s${STAGE}_$name.tgz" -C "$W/models" "$name"; done
tar czf "$OUT/logs$STAGE.tgz" --exclude=models "$W"
stamp "packed"; ls -la "$OUT"
