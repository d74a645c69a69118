#!/usr/bin/env bash
# Train one TGS fold and one ISBI fold on CPU (no pretrained weights), then summarise them into
# benchmarks/results/real_data.json. Usage: benchmarks/real_data.sh [LOG_DIR]  (run from the repo root)
set -euo pipefail
LOG=${1:-runs/real-data-logs}
mkdir -p "$LOG" runs/real-data
K=.venv/bin/kseg
NICE="nice -n 10"

source benchmarks/tgs_cpu_args.sh
TGS+=(name=tgs-salt/unet-r18-cpu)
ISBI=(-c configs/isbi2012/unet.yaml name=isbi2012/unet-r18-cpu data.root=../shared/data/isbi2012
      data.folds_csv=runs/real-data/isbi-folds.csv data.num_workers=1 data.image_size=256
      model.encoder=resnet18 model.encoder_weights=none train.epochs=40 wandb.mode=disabled)

[ -f runs/real-data/tgs-folds.csv ] || $K folds "${TGS[@]}"
[ -f runs/real-data/isbi-folds.csv ] || $K folds "${ISBI[@]}"
# the first baseline: BCE + lovasz from the start (the shipped config now trains BCE, then lovasz in stage 2)
/usr/bin/time -v $NICE $K train "${TGS[@]}" 'loss=[{name: bce, weight: 0.5}, {name: lovasz, weight: 0.5}]' --fold 0 > "$LOG/real-tgs.log" 2>&1
/usr/bin/time -v $NICE $K train "${ISBI[@]}" --fold 0 > "$LOG/real-isbi.log" 2>&1
.venv/bin/python benchmarks/real_data_summary.py runs/tgs-salt/unet-r18-cpu/fold0 runs/isbi2012/unet-r18-cpu/fold0
