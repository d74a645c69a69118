"""Fold training: ``runs/<exp>/fold<K>/`` artefacts (see the README, "Training artefacts").

- ``fit``: ``train_fold`` / ``train_folds``, one fold end to end (``FoldResult``);
- ``trainer``: ``Trainer``, the training state (one ``state_dict`` / ``load_state_dict`` for ``last.pt`` and
  ``--resume``) and the optimizer step; ``runtime``: device, AMP, channels_last (``Runtime``, ``amp_step``);
- ``loop``: one training epoch (``train_epoch`` over a ``Trainer``) and one validation pass;
- ``state``: ``last.pt`` / ``best.pt`` / ``metrics.csv`` on disk; ``seed``: seeding and RNG snapshots;
- ``data``: fold datasets, DDP-aware samplers, augmentation seeding; ``dist``: DDP helpers;
- ``oof_store``: the out-of-fold probability store (``OofWriter``, ``read_oof``, ``oof_files``);
- ``truth``: ground truth at the submission size; ``preflight``: checks before any work;
- ``tracking``: wandb, never fatal.
"""
