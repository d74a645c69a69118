"""Post-processing search on out-of-fold predictions (``kseg tune``).

- ``grid``: the parameter grid (``Grid.from_config(cfg.tune)``);
- ``stats``: vectorized per-image statistics of every grid cell (``class_grid_stats``);
- ``search``: score sums per fold, optimistic and cross-validated choice (``ScoreTable``);
- ``oof_set``: memory-mapped OOF stores of one or more experiments (``load_oof``); their ground truth comes
  from ``kseg.train.truth.TruthTable``, as in training;
- ``run``: ``tune(cfg, runs) -> TuneResult``; ``report``: ``write_outputs(cfg, result)``.
"""
