"""Helpers shared by the training tests: a tiny, fast demo config and an independent OOF re-prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kseg.config import Config, load_config
from kseg.data.dataset import SegDataset, read_labels
from kseg.data.folds import write_folds
from kseg.metrics import score
from kseg.models import load_checkpoint, predict_proba
from kseg.train.oof_store import to_uint8
from kseg.train.truth import TruthTable, restore_batch

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "data.image_size=[32, 64]",
    "data.batch_size=4",
    "data.num_workers=0",
    "train.epochs=1",
    "model.kwargs={encoder_depth: 3, decoder_channels: [16, 8, 4]}",
    "wandb.mode=disabled",
]


def tiny_config(demo_root: Path, tmp_path: Path, *extra: str) -> Config:
    """Demo config on ``demo_root`` with folds + runs under ``tmp_path`` (folds.csv written once)."""
    cfg = load_config(
        REPO / "configs" / "demo.yaml",
        [
            f"data.root={demo_root}",
            f"data.folds_csv={tmp_path / 'folds.csv'}",
            f"runs_dir={tmp_path / 'runs'}",
            *TINY,
            *extra,
        ],
    )
    if not cfg.folds_path.exists():
        write_folds(cfg)
    return cfg


def val_ids(cfg: Config, fold: int) -> list[str]:
    folds = pd.read_csv(cfg.folds_path, dtype=str)
    return folds[folds.columns[0]][folds.fold.astype(int) == fold].tolist()


def repredict(checkpoint: Path, cfg: Config, ids: list[str]) -> np.ndarray:
    """uint8 (N, C, H, W) at the submission size from the checkpoint alone, one image at a time."""
    model, ccfg = load_checkpoint(checkpoint)
    ds = SegDataset(cfg, ids, labels=None, train=False)
    out = []
    for item in ds:
        probs, _ = predict_proba(model, item["image"][None], ccfg.competition.mode)
        full, _ = restore_batch(probs, [tuple(item["size"].tolist())], ccfg)
        out.append(to_uint8(full))
    return np.concatenate(out)


def oof_score(oof: np.ndarray, cfg: Config, ids: list[str]) -> float:
    """The competition metric of uint8 OOF probabilities at threshold 0.5 against the training labels."""
    natives = [tuple(cfg.competition.image_size)] * len(ids)
    truth = TruthTable(cfg, read_labels(cfg)).masks(ids, tuple(oof.shape[2:]), natives)
    return score(np.asarray(oof) > 127.5, truth, cfg.competition.metric)
