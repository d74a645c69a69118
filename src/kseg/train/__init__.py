"""Fold training: ``runs/<exp>/fold<K>/`` artefacts (see the README, "Training artefacts").

- ``fit``: ``train_fold`` / ``train_folds``, one fold end to end (``FoldResult``);
- ``loop``: one training epoch and one validation pass;
- ``state``: ``last.pt`` / ``best.pt`` / ``metrics.csv`` on disk; ``seed``: seeding and RNG snapshots;
- ``data``: fold datasets, DDP-aware samplers, augmentation seeding; ``dist``: DDP helpers;
- ``oof_store``: the out-of-fold probability store (``OofWriter``, ``read_oof``, ``oof_files``);
- ``truth``: ground truth at the submission size; ``preflight``: checks before any work;
- ``tracking``: wandb, never fatal.
"""
