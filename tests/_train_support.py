"""Helpers shared by the training tests: a tiny, fast demo config and an independent OOF re-prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kseg.config import Config, load_config, save_config
from kseg.data.dataset import SegDataset, read_labels
from kseg.data.folds import write_folds
from kseg.data.pixels import model_input
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
        probs, _ = predict_proba(model, model_input(item["image"][None], cfg.data.normalize), ccfg.competition.mode)
        full, _ = restore_batch(probs, [tuple(item["size"].tolist())], ccfg)
        out.append(to_uint8(full))
    return np.concatenate(out)


def oof_score(oof: np.ndarray, cfg: Config, ids: list[str]) -> float:
    """The competition metric of uint8 OOF probabilities at threshold 0.5 against the training labels."""
    natives = [tuple(cfg.competition.image_size)] * len(ids)
    truth = TruthTable(cfg, read_labels(cfg)).masks(ids, tuple(oof.shape[2:]), natives)
    return score(np.asarray(oof) > 127.5, truth, cfg.competition.metric)


def ensemble_cfg(demo_root: Path, tmp_path: Path, name: str = "demo-ensemble") -> Config:
    """configs/demo-ensemble.yaml on ``demo_root``, folds and runs under ``tmp_path``, a small tune grid."""
    return load_config(
        REPO / "configs" / "demo-ensemble.yaml",
        [
            f"data.root={demo_root}",
            f"data.folds_csv={tmp_path / 'folds.csv'}",
            f"runs_dir={tmp_path / 'runs'}",
            f"name={name}",
            "tune.min_sizes=[0, 64]",
            "tune.thresholds=[0.3, 0.5, 0.7]",
        ],
    )


def write_member_oof(cfg: Config, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Synthetic OOF stores on ``cfg``'s folds.csv of runs 'good' (truth + noise), 'noise' (uniform) and 'fair'
    (weaker truth + noise), one per fold; returns the members' arrays."""
    if not cfg.folds_path.is_file():
        write_folds(cfg)
    folds = pd.read_csv(cfg.folds_path, dtype={"fold": int})
    ids = folds.iloc[:, 0].astype(str).tolist()
    h, w = cfg.competition.image_size
    truth = TruthTable(cfg).masks(ids, (h, w))
    members = {
        "good": np.clip(truth * 180.0 + rng.normal(40, 30, truth.shape), 0, 255).astype(np.uint8),
        "noise": rng.integers(0, 256, truth.shape).astype(np.uint8),
        "fair": np.clip(truth * 110.0 + rng.normal(70, 50, truth.shape), 0, 255).astype(np.uint8),
    }
    for name, q in members.items():
        layout = cfg.replace(name=name)
        save_config(layout)
        for k in sorted(folds.fold.unique()):
            rows = np.flatnonzero(folds.fold.to_numpy() == k)
            paths = layout.layout.oof(int(k))
            paths.probs.parent.mkdir(parents=True, exist_ok=True)
            np.save(paths.probs, q[rows])
            pd.DataFrame({"image_id": [ids[i] for i in rows]}).to_csv(paths.ids, index=False)
    return members
