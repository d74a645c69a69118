#!/usr/bin/env bash
# Folds 2 and 3 of the shipped TGS recipe (stage 1 BCE, stage 2 lovasz), CPU settings of tgs_ablation.sh, into
# tgs-salt/r18-cpu-bce-5f and tgs-salt/r18-cpu-bce-lovasz-5f; folds 0 and 1 are copied from the ablation runs.
# Then OOF with hflip TTA and kseg tune on all 4 folds. Usage: benchmarks/tgs_more_folds.sh [LOG_DIR] (after tgs_ablation.sh)
set -euo pipefail
LOG=${1:-runs/ablation-logs}
mkdir -p "$LOG"
K=.venv/bin/kseg
source benchmarks/tgs_cpu_args.sh
STAGE2=(train.init_from=runs/tgs-salt/r18-cpu-bce-5f/fold{fold}/best.pt train.epochs=3 sched.warmup_epochs=0 optim.lr=1.0e-4)
for pair in "r18-cpu-bce r18-cpu-bce-5f" "r18-cpu-bce-lovasz r18-cpu-bce-lovasz-5f"; do
  set -- $pair; mkdir -p runs/tgs-salt/$2; cp -r runs/tgs-salt/$1/fold0 runs/tgs-salt/$1/fold1 runs/tgs-salt/$2/
done
one() {
  OMP_NUM_THREADS=1 nice -n 5 $K train "${TGS[@]}" name=tgs-salt/r18-cpu-bce-5f 'loss=[{name: bce}]' --fold $1 > "$LOG/bce-f$1.log" 2>&1
  OMP_NUM_THREADS=1 nice -n 5 $K train "${TGS[@]}" name=tgs-salt/r18-cpu-bce-lovasz-5f 'loss=[{name: lovasz}]' "${STAGE2[@]}" \
      --fold $1 > "$LOG/bce-lovasz-f$1.log" 2>&1
}
one 2 & one 3 & wait
for exp in r18-cpu-bce-5f r18-cpu-bce-lovasz-5f; do
  $K predict "${TGS[@]}" name=tgs-salt/$exp --oof --tta hflip --folds 2,3 --no-progress
  $K tune "${TGS[@]}" name=tgs-salt/$exp tune.oof_tta= 'tune.aux_gates=[0]' --no-plots   # no TTA, no gate
  $K tune "${TGS[@]}" name=tgs-salt/$exp --no-plots                                     # the config: hflip OOF + aux gate
done
