"""Fold artefacts on disk: ``last.pt`` (full training state), ``best.pt``, ``metrics.csv``.

``last.pt`` = ``best.pt``'s keys (state_dict, config) + optimizer, scheduler, GradScaler, EMA, epoch,
best score, early-stopping counter, metric history, wandb run id, and every RNG state (python, numpy,
torch, CUDA, the DataLoader generator) - all tensors / plain types, so ``torch.load(weights_only=True)``
reads it and ``--resume`` continues bit for bit.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from kseg.atomic import CorruptFileError, atomic_write_text, torch_load
from kseg.config import Config, config_to_dict

log = logging.getLogger(__name__)

METRIC_COLUMNS = ["epoch", "lr", "train_loss", "val_loss", "val_metric", "seconds"]


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
    swa: dict[str, Any] | None = None  # train.swa's outcome once averaged (kseg.train.swa.average_fold)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Progress:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def improves(self, score: float) -> bool:
        """Whether ``score`` beats the best so far (strictly; NaN never does)."""
        return math.isfinite(score) and score > self.best_score

    def record(self, row: dict[str, float], patience: int = 0) -> bool:
        """Book the finished epoch ``row`` (``METRIC_COLUMNS``): best score / epoch, early-stopping counter
        (``stopped_early`` after ``patience`` epochs without improvement; 0 = never), history. True when it improved.
        """
        improved = self.improves(row["val_metric"])
        self.epoch = int(row["epoch"])
        self.swa = None  # an average of earlier epochs is out of date
        if improved:
            self.best_score, self.best_epoch, self.bad_epochs = row["val_metric"], self.epoch, 0
        else:
            self.bad_epochs += 1
        self.history.append(row)
        if patience and self.bad_epochs >= patience:
            self.stopped_early = True
        return improved

    def selected(self, select: str) -> tuple[float, int]:
        """(val metric, epoch) of the epoch held by best.pt / oof.npy under ``train.select`` (best | last)."""
        if select == "last" and self.history:
            return float(self.history[-1]["val_metric"]), self.epoch
        return self.best_score, self.best_epoch

    def swa_candidates(self, mode: str, k: int) -> list[int]:
        """The 1-based epochs ``train.swa`` would average now, sorted: the ``k`` of highest val metric
        (``top``; NaN never, ties to the later epoch), the ``k`` latest (``last``), none (``off``)."""
        rows = [(int(r["epoch"]), float(r["val_metric"])) for r in self.history]
        if mode == "last":
            return sorted(e for e, _ in rows[-k:])
        if mode == "top":
            finite = [(e, s) for e, s in rows if math.isfinite(s)]
            return sorted(e for e, _ in sorted(finite, key=lambda es: (-es[1], -es[0]))[:k])
        return []


def write_metrics_csv(path: str | Path, history: list[dict[str, Any]]) -> None:
    """``metrics.csv``: one row per finished epoch with ``METRIC_COLUMNS`` (rewritten atomically), and the columns
    of any other keys the rows have (``train.swa``'s row: ``swa_epochs``, ``swa_kept``)."""
    extra = [k for k in dict.fromkeys(k for row in history for k in row) if k not in METRIC_COLUMNS]
    df = pd.DataFrame(history, columns=METRIC_COLUMNS + extra)
    atomic_write_text(Path(path), df.to_csv(index=False))


def load_last(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The ``last.pt`` payload (weights-only unpickling); checks the keys ``--resume`` needs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"--resume: {path} not found (no finished epoch to resume from): "
            "run without --resume to train the fold from the start"
        )
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


# keys --resume must not change: (dotted key, its value in checkpoints older than the key, why)
RESUME_FIXED = (
    ("train.select", "best", "best.pt and oof.npy of the finished epochs were kept under the other rule"),
    ("optim.no_decay_norm_bias", False, "the optimizer state does not fit the other parameter groups"),
)


def check_resumable(ckpt: dict[str, Any], cfg: Config, path: str | Path) -> None:
    """Refuse to resume ``ckpt`` (read from ``path``) with a ``RESUME_FIXED`` key changed; log the other changes."""
    saved, now = ckpt["config"], config_to_dict(cfg)
    for key, older, reason in RESUME_FIXED:
        section, name = key.split(".")
        was, want = yaml_value(saved.get(section, {}).get(name, older)), yaml_value(now[section][name])
        if was != want:
            raise ValueError(
                f"--resume: {path} was trained with {key}={was}, this run has {key}={want}: {reason}. "
                f"Resume with {key}={was}, or train the fold again without --resume"
            )
    diffs = config_changes(saved, now)
    if diffs:
        log.warning("--resume with a changed config (exact continuation not guaranteed): %s", "; ".join(diffs[:10]))


def yaml_value(value: object) -> str:
    """``value`` as written in a ``key=value`` override (``true``, not ``True``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def config_changes(before: object, after: object, key: str = "") -> list[str]:
    """``"key: old -> new"`` for every dotted key whose value differs between two plain config dicts."""
    if isinstance(before, dict) and isinstance(after, dict):
        keys = sorted(set(before) | set(after))
        return [d for k in keys for d in config_changes(before.get(k), after.get(k), f"{key}.{k}" if key else k)]
    return [] if before == after else [f"{key}: {before!r} -> {after!r}"]
