#!/usr/bin/env bash
# Issue 19 on all 3000 real TGS images: 3 fixed folds, two CPU-sized experiments (A: BCE, B: BCE+lovasz),
# resnet18 (3 stages, decoder 32-16-8) from scratch, 101 -> 64 px resize, 2 epochs; then tune, ensemble, report.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=2
K=".venv/bin/python -m kseg.cli"
LOG=runs/lead-tgs; mkdir -p $LOG
TGS=(-c configs/tgs-salt/unet-r34.yaml data.root=../shared/data/tgs-salt
     data.folds_csv=runs/lead-tgs/folds3.csv data.n_folds=3 data.num_workers=1 data.batch_size=16
     data.image_size=[64,64] data.resize=resize "model.kwargs={encoder_depth: 3, decoder_channels: [32, 16, 8]}"
     model.encoder=resnet18 model.encoder_weights=none train.epochs=2 train.patience=0 sched.warmup_epochs=0.2
     wandb.mode=disabled tune.oof_tta=)
echo "folds $(date -u)" >> $LOG/times.txt
$K folds "${TGS[@]}" name=tgs-salt/lead-a-bce > $LOG/folds.log 2>&1
echo "A $(date -u)" >> $LOG/times.txt
$K train "${TGS[@]}" name=tgs-salt/lead-a-bce --fold all > $LOG/a.log 2>&1
echo "B $(date -u)" >> $LOG/times.txt
$K train "${TGS[@]}" name=tgs-salt/lead-b-bcelovasz 'loss=[{name: bce, weight: 0.5}, {name: lovasz, weight: 0.5}]' --fold all > $LOG/b.log 2>&1
echo "post $(date -u)" >> $LOG/times.txt
for exp in lead-a-bce lead-b-bcelovasz; do $K tune "${TGS[@]}" name=tgs-salt/$exp --no-plots > $LOG/tune-$exp.log 2>&1; done
$K ensemble "${TGS[@]}" name=tgs-salt/lead-ens --runs tgs-salt/lead-a-bce tgs-salt/lead-b-bcelovasz --steps 10 > $LOG/ensemble.log 2>&1
$K ensemble "${TGS[@]}" name=tgs-salt/lead-ens-tunegrid --runs tgs-salt/lead-a-bce tgs-salt/lead-b-bcelovasz --steps 10 --grid tune > $LOG/ensemble-tunegrid.log 2>&1
$K report --runs-dir runs > $LOG/report.md 2> $LOG/report.err
echo "done $(date -u)" >> $LOG/times.txt
