"""Summarise real-data fold runs (metrics.csv of each fold dir) into benchmarks/results/real_data.json.

    .venv/bin/python benchmarks/real_data_summary.py runs/<exp>/fold0 [...]

``ratio`` = best fold metric / ``goal`` baseline: the score of predicting every mask empty (TGS iou_ap:
the fraction of empty masks) or of the all-foreground mask (ISBI dice), computed on the same fold.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from kseg.config import read_saved_config
from kseg.data.dataset import read_labels
from kseg.metrics import score
from kseg.train.oof_store import read_oof
from kseg.train.truth import TruthTable

from _common import write_results


def baseline(cfg, ids: list[str], shape: tuple[int, int]) -> tuple[str, float]:
    """Score of the better trivial prediction (all empty or all foreground) on the fold's images."""
    truth = TruthTable(cfg, read_labels(cfg))
    masks = np.stack([truth.masks([i], shape, [shape])[0] for i in ids])
    empty, full = np.zeros_like(masks), np.ones_like(masks)
    scores = {
        "all_empty": score(empty, masks, cfg.competition.metric),
        "all_foreground": score(full, masks, cfg.competition.metric),
    }
    name = max(scores, key=scores.get)
    return name, scores[name]


def main(fold_dirs: list[str]) -> None:
    records = []
    for d in map(Path, fold_dirs):
        cfg = read_saved_config(d.parent / "config.yaml")
        m = pd.read_csv(d / "metrics.csv")
        oof, ids = read_oof(d)
        kind, base = baseline(cfg, ids, tuple(oof.shape[2:]))
        best = m.loc[m.val_metric.idxmax()]
        records.append(
            {
                "name": f"real_{cfg.competition.name}_{d.name}",
                "ratio": round(float(best.val_metric) / base, 3) if base > 0 else float("inf"),
                "goal": 1.0,
                "metric": cfg.competition.metric,
                "best_val_metric": round(float(best.val_metric), 4),
                "best_epoch": int(best.epoch),
                "epochs": int(m.epoch.max()),
                "trivial_baseline": kind,
                "trivial_baseline_metric": round(base, 4),
                "train_minutes": round(float(m.seconds.sum()) / 60, 1),
                "val_images": len(ids),
                "encoder": cfg.model.encoder,
                "encoder_weights": cfg.model.encoder_weights,
                "image_size": list(cfg.data.image_size),
                "batch_size": cfg.data.batch_size,
                "per_epoch": m.round(4).to_dict(orient="records"),
            }
        )
    write_results("real_data", records)


if __name__ == "__main__":
    main(sys.argv[1:])
