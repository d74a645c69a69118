"""Shared helpers of the reliability suite: a tiny, fast training config and artefact comparisons."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from kseg.config import Config, load_config
from kseg.data.folds import write_folds

REPO = Path(__file__).resolve().parents[2]
DEMO_YAML = REPO / "configs" / "demo.yaml"
# resnet18 at depth 3, 32x64 images, 4 steps per epoch on the 24-image demo (16 train / 8 val in fold 0)
TINY = (
    "data.image_size=[32, 64]",
    "data.batch_size=4",
    "data.num_workers=0",
    "train.epochs=2",
    "model.kwargs={encoder_depth: 3, decoder_channels: [16, 8, 4]}",
    "wandb.mode=disabled",
)


def overrides(demo_root: Path, tmp_path: Path, *extra: str) -> list[str]:
    """Overrides putting folds.csv and runs/ under ``tmp_path`` plus ``TINY`` and ``extra``."""
    return [
        f"data.root={demo_root}",
        f"data.folds_csv={tmp_path / 'folds.csv'}",
        f"runs_dir={tmp_path / 'runs'}",
        *TINY,
        *extra,
    ]


def tiny_cfg(demo_root: Path, tmp_path: Path, *extra: str) -> Config:
    """The tiny demo config (folds.csv written on first use)."""
    cfg = load_config(DEMO_YAML, overrides(demo_root, tmp_path, *extra))
    if not cfg.folds_path.exists():
        write_folds(cfg)
    return cfg


def train_argv(demo_root: Path, tmp_path: Path, *extra: str, fold: int = 0, resume: bool = False) -> list[str]:
    """``kseg`` argv training ``fold`` with the tiny config."""
    return [
        "train",
        "-c",
        str(DEMO_YAML),
        "--fold",
        str(fold),
        *(["--resume"] if resume else []),
        *overrides(demo_root, tmp_path, *extra),
    ]


def load(path: Path) -> dict:
    """A checkpoint payload, read the way kseg reads it (weights only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Bitwise equality of two state dicts (same keys, same dtypes, same bits)."""
    assert list(a) == list(b)
    diff = [k for k in a if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k])]
    assert not diff, f"{len(diff)} tensors differ, e.g. {diff[:3]}"


def metrics(fold_dir: Path) -> pd.DataFrame:
    return pd.read_csv(fold_dir / "metrics.csv")
