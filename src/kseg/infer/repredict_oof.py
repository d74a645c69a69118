"""``kseg predict --oof``: re-predict each fold's validation images with that fold's checkpoint and TTA.

Training stores the OOF of the best epoch without TTA (``oof.npy``). The submission is usually predicted
with TTA, so its post-processing should be tuned on OOF predicted the same way: this writes
``fold<K>/oof_tta-<NAME>.npy`` (+ ``_ids.csv``, + ``_aux.npy`` with aux heads) next to the training OOF,
and ``kseg tune tune.oof_tta=NAME`` tunes on them. Everything streams through the same predictor as
``kseg predict`` (restore to the submission size, quantize), one batch in memory at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kseg.config import Config
from kseg.data.folds import fold_split
from kseg.infer.checkpoints import find_checkpoints
from kseg.infer.ensemble import Ensemble
from kseg.infer.stream import predict_images
from kseg.layout import BEST
from kseg.postprocess import quantize
from kseg.train.oof_store import OofWriter, write_aux, write_ids

log = logging.getLogger(__name__)

__all__ = ["OofPrediction", "predict_oof"]


@dataclass(frozen=True)
class OofPrediction:
    fold: int
    images: int
    path: Path
    aux_path: Path | None


def predict_fold_oof(cfg: Config, fold: int, tta: str, weights: str = BEST, progress: bool = True) -> OofPrediction:
    """Predict fold ``fold``'s validation images with ``runs/<exp>/fold<K>/<weights>`` and TTA ``tta``.

    Writes uint8 [N, C, H, W] probabilities at the OOF size (``oof_size``), ids in folds.csv order and, with an
    aux head, uint8 [N, C] aux probabilities; each file atomically.
    """
    ensemble = Ensemble.from_runs(
        cfg, (cfg.name,), (fold,), tta=tta, device=cfg.train.device, amp=cfg.predict.amp, weights=weights
    )
    _, val_ids = fold_split(cfg, fold)
    if not val_ids:
        raise ValueError(f"fold {fold} has no validation images in {cfg.folds_path}")
    out = cfg.layout.oof(fold, tta)
    image_dir = cfg.data_root / cfg.competition.train_images
    if cfg.tile.enabled:  # slides: the OOF is kept per tile of the window grid (kseg.data.tiles)
        from kseg.data.tiles import expand_tile_ids

        val_ids = expand_tile_ids(cfg, val_ids, image_dir)
    writer: OofWriter | None = None
    aux_rows: list[np.ndarray] = []
    ids: list[str] = []
    try:
        for i, pred in enumerate(predict_images(ensemble, val_ids, image_dir, progress=progress, oof=True)):
            if writer is None:
                writer = OofWriter(out.probs, (len(val_ids), *pred.q.shape))
            if pred.q.shape != writer.shape[1:]:
                raise ValueError(
                    f"image {pred.image_id}: submission size {pred.q.shape[1:]} != {writer.shape[2:]} "
                    "of the fold's first image (OOF images must share one size)"
                )
            writer.write(i, pred.q[None])
            ids.append(pred.image_id)
            if pred.aux is not None:
                aux_rows.append(quantize(pred.aux))
        if writer is None or len(ids) != len(val_ids):
            raise ValueError(
                f"fold {fold}: predicted {len(ids)} of {len(val_ids)} validation images "
                "(unreadable images are not allowed in an OOF store)"
            )
        aux_path = None
        if aux_rows:
            aux_path = out.aux
            write_aux(aux_path, np.stack(aux_rows))
        else:
            out.aux.unlink(missing_ok=True)  # a stale one would no longer match
        write_ids(out.ids, ids)
        path = writer.commit()
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    log.info("fold %d: %d OOF images predicted with tta=%s -> %s", fold, len(ids), tta, path)
    return OofPrediction(fold, len(ids), path, aux_path)


def predict_oof(
    cfg: Config, folds: Sequence[int] = (), tta: str | None = None, weights: str = BEST, progress: bool = True
) -> list[OofPrediction]:
    """``predict_fold_oof`` for ``folds`` (default: every fold of the experiment with a checkpoint)."""
    tta = tta or cfg.predict.tta
    found = [k for k, _ in find_checkpoints(cfg.runs_dir, cfg.name, folds or cfg.predict.folds, weights)]
    return [predict_fold_oof(cfg, k, tta, weights, progress) for k in found]
