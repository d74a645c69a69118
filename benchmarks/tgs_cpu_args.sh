# Sourced by the TGS benchmark scripts: the CPU training arguments every TGS run here shares
# (resnet18 from scratch, 128 px, 7 epochs, 1 loader worker, batch 16, fixed folds, no wandb).
TGS=(-c configs/tgs-salt/unet-r34.yaml data.root=../shared/data/tgs-salt
     data.folds_csv=runs/real-data/tgs-folds.csv data.num_workers=1 data.batch_size=16
     model.encoder=resnet18 model.encoder_weights=none train.epochs=7 train.patience=0 sched.warmup_epochs=0.5
     wandb.mode=disabled)
