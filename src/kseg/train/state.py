"""Fold artefacts on disk: ``last.pt`` (full training state), ``best.pt``, ``metrics.csv``.

``last.pt`` = ``best.pt``'s keys (state_dict, config) + optimizer, scheduler, GradScaler, EMA, epoch,
best score, early-stopping counter, metric history, wandb run id, and every RNG state (python, numpy,
torch, CUDA, the DataLoader generator) - all tensors / plain types, so ``torch.load(weights_only=True)``
reads it and ``--resume`` continues bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from kseg.atomic import CorruptFileError, atomic_write_text, torch_load

METRIC_COLUMNS = ["epoch", "lr", "train_loss", "val_loss", "val_metric", "seconds"]
LAST, BEST, METRICS_CSV = "last.pt", "best.pt", "metrics.csv"


@dataclass
class Progress:
    """Loop bookkeeping saved in ``last.pt``; ``epoch`` = number of finished epochs."""

    epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    wandb_id: str | None = None
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Progress":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def write_metrics_csv(path: str | Path, history: list[dict[str, float]]) -> None:
    """``metrics.csv``: one row per finished epoch with ``METRIC_COLUMNS`` (rewritten atomically)."""
    df = pd.DataFrame(history, columns=METRIC_COLUMNS)
    atomic_write_text(Path(path), df.to_csv(index=False))


def load_last(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The ``last.pt`` payload (weights-only unpickling); checks the keys ``--resume`` needs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--resume: {path} not found (no finished epoch to resume from): "
                                "run without --resume to train the fold from the start")  # fmt: skip
    try:
        ckpt = torch_load(path, map_location=map_location)
    except CorruptFileError as e:
        raise CorruptFileError(
            f"--resume: {e}. It cannot be resumed: run the fold again without --resume. A fresh run replaces "
            f"best.pt, oof.npy and metrics.csv of {path.parent} too: copy them aside first if you want to keep them"
        ) from e
    need = ("state_dict", "config", "optimizer", "scheduler", "scaler", "progress", "rng", "generator")
    missing = [k for k in need if k not in ckpt]
    if missing:
        raise ValueError(f"{path}: not a resumable kseg checkpoint (missing {', '.join(missing)})")
    return ckpt
