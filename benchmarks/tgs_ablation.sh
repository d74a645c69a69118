#!/usr/bin/env bash
# TGS Salt config ablation on CPU (2 folds, resnet18 from scratch, 7 epochs): trains the variants of
# configs/tgs-salt/unet-r34.yaml that differ from the baseline in one thing, re-predicts their OOF with
# hflip TTA, then scores every variant with the same tuning grid into results/tgs_ablation.json.
# Usage: benchmarks/tgs_ablation.sh [LOG_DIR]   (run from the repo root; ~4 h on 2 cores, run in the background)
# The baseline tgs-salt/unet-r18-cpu is the one of benchmarks/real_data.sh (+ fold 1), see quality.md.
set -euo pipefail
LOG=${1:-runs/ablation-logs}
mkdir -p "$LOG"
K=.venv/bin/kseg
source benchmarks/tgs_cpu_args.sh
FOLDS=0,1
train() { local log=$1; shift; OMP_NUM_THREADS=1 nice -n 5 $K train "${TGS[@]}" "$@" --fold $FOLDS > "$LOG/$log.log" 2>&1; }

[ -f runs/tgs-salt/unet-r18-cpu/fold1/best.pt ] || train baseline name=tgs-salt/unet-r18-cpu \
    'loss=[{name: bce, weight: 0.5}, {name: lovasz, weight: 0.5}]'    # the first shipped loss
train resize name=tgs-salt/r18-cpu-resize data.resize=resize &          # 101 -> 128 bilinear resize instead of reflect pad
train bce name=tgs-salt/r18-cpu-bce 'loss=[{name: bce}]' &               # BCE alone (stage 1 of the lovasz recipe)
wait
STAGE2=(train.init_from=runs/tgs-salt/r18-cpu-bce/fold{fold}/best.pt train.epochs=3 sched.warmup_epochs=0 optim.lr=1.0e-4)
train bce-lovasz name=tgs-salt/r18-cpu-bce-lovasz 'loss=[{name: lovasz}]' "${STAGE2[@]}" &   # lovasz hinge fine-tuning
train bce-more name=tgs-salt/r18-cpu-bce-more 'loss=[{name: bce}]' "${STAGE2[@]}" &         # control: 3 more BCE epochs
wait
for exp in unet-r18-cpu r18-cpu-resize r18-cpu-bce r18-cpu-bce-lovasz r18-cpu-bce-more; do
  for tta in none hflip; do
    $K predict "${TGS[@]}" name=tgs-salt/$exp --oof --tta $tta --no-progress >> "$LOG/oof.log" 2>&1
  done
done
.venv/bin/python benchmarks/tgs_ablation.py "${TGS[@]}"
