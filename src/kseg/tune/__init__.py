"""Post-processing search on out-of-fold predictions (``kseg tune``).

- ``grid``: the parameter grid (``Grid.from_config(cfg.tune)``);
- ``stats``: vectorized per-image statistics of every grid cell (``class_grid_stats``);
- ``search``: score sums per fold, optimistic and cross-validated choice (``ScoreTable``);
- ``oof_set``: memory-mapped OOF stores of one or more experiments + ground truth (``load_oof``, ``Truth``);
- ``run``: ``tune(cfg, runs) -> TuneResult``; ``report``: ``write_outputs(cfg, result)``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["tune", "TuneResult", "write_outputs", "Grid"]


def __getattr__(name: str) -> Any:  # lazy: importing kseg.tune stays cheap
    if name in ("tune", "TuneResult"):
        from kseg.tune import run

        return getattr(run, name)
    if name == "write_outputs":
        from kseg.tune.report import write_outputs

        return write_outputs
    if name == "Grid":
        from kseg.tune.grid import Grid

        return Grid
    raise AttributeError(name)
