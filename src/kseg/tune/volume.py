"""The per-case tuning path of ``volume`` metrics (``dice_hausdorff``): slower than the vectorized one, and logged.

A 3D Hausdorff distance is not a sum over images, so each grid cell's post-processed volume of each case is
built and measured. Per case and class: ``class_grid_stats`` gives every cell's per-slice statistics (the dice
part, vectorized as usual); per threshold one connected-components pass per slice gives the volume after every
``min_size`` (a lookup over the labels); every other axis (min_area, gates, triplet rule) only empties whole
slices, read off the cell's predicted areas. Each distinct volume then costs one Hausdorff distance
(``kseg.metrics.volume.Hausdorff``: nearest-surface queries, the truth's surface tree built once per case and
class); cells that leave the same slices give the same volume and share it. Cases must lie in one fold each.
"""

from __future__ import annotations

import logging

import numpy as np
from tqdm.auto import tqdm

from kseg.config import Config
from kseg.metrics import Metric, case_groups
from kseg.metrics.volume import Hausdorff
from kseg.postprocess import binarize, components, exclusive_candidates
from kseg.train.truth import TruthTable
from kseg.tune.grid import Grid
from kseg.tune.oof_set import OOFSet
from kseg.tune.search import StatsTable
from kseg.tune.stats import class_grid_stats

log = logging.getLogger(__name__)

__all__ = ["case_cell_stats", "min_size_masks", "score_cases"]


def min_size_masks(q: np.ndarray, threshold: float, min_sizes: tuple[int, ...]) -> list[np.ndarray]:
    """bool [n, H, W] per min size: ``q [n, H, W] > level(threshold)`` without 8-connected components (per slice)
    of fewer than ``min_size`` pixels, as ``kseg.postprocess.remove_small``; one components pass per slice."""
    fg = binarize(q, threshold)
    if all(s <= 1 for s in min_sizes):
        return [fg for _ in min_sizes]
    labels = np.zeros(q.shape, dtype=np.int64)
    areas = [np.zeros(1, dtype=np.int64)]
    offset = 0
    for i in np.flatnonzero(fg.reshape(len(fg), -1).any(axis=1)):
        lab, ar = components(fg[i])
        labels[i] = np.where(lab > 0, lab.astype(np.int64) + offset, 0)
        areas.append(ar[1:])
        offset += ar.size - 1
    area = np.concatenate(areas)
    out = []
    for s in min_sizes:
        keep = area >= s
        keep[0] = False
        out.append(fg if s <= 1 else keep[labels])
    return out


def case_cell_stats(
    q: np.ndarray, truth: np.ndarray, grid: Grid, aux_q: np.ndarray | None, metric: Metric
) -> tuple[np.ndarray, np.ndarray]:
    """(statistics [cells, K] of every grid cell, of the default cell [K]) for one class of one case.

    q: uint8 [Z, H, W] and truth bool [Z, H, W], slices in slice order; aux_q uint8 [Z] | None.
    """
    st = class_grid_stats(q, truth, grid, aux_q)
    z = q.shape[0]
    cells = metric.item_stats(st.inter, st.pred_area, st.true_area).reshape(grid.size, z, -1).sum(axis=1)
    default = metric.item_stats(st.default_inter, st.default_pred_area, st.true_area).sum(axis=0)
    prepared = Hausdorff(truth)  # the truth's surface tree, once for every cell
    default += metric.volume_stats(binarize(q, 0.5), prepared)
    n_t, n_s = len(grid.thresholds), len(grid.min_sizes)
    kept = st.pred_area.reshape(n_t, n_s, -1, z) > 0  # slices a cell keeps [T, S, rest, Z]
    volume = np.empty(kept.shape[:3] + (cells.shape[1],))
    for ti, t in enumerate(grid.thresholds):
        seen: dict[bytes, np.ndarray] = {}
        for si, mask in enumerate(min_size_masks(q, t, grid.min_sizes)):
            for r in range(kept.shape[2]):
                key = bytes([si]) + kept[ti, si, r].tobytes()
                if key not in seen:
                    seen[key] = metric.volume_stats(mask & kept[ti, si, r][:, None, None], prepared)
                volume[ti, si, r] = seen[key]
    return cells + volume.reshape(grid.size, -1), default


def score_cases(
    cfg: Config, oof: OOFSet, grid: Grid, truth: TruthTable, metric: Metric, progress: bool | None
) -> StatsTable:
    """Score every grid cell per class on whole cases (``competition.volume``): the ``volume`` metrics' path."""
    spec, size = cfg.competition, tuple(oof.shape[1:])
    fold_pos = oof.fold_positions()
    groups = case_groups(*spec.volume_keys(oof.ids))
    num_classes = oof.shape[0]
    log.info(
        "metric %s scores 3D volumes: tuning %d cells x %d classes case by case on %d cases (%d OOF slices); "
        "this is the slow path (a post-processed volume and a 3D Hausdorff distance per distinct cell and case), "
        "not the vectorized one",
        metric.name,
        grid.size,
        num_classes,
        len(groups),
        len(oof),
    )
    width = metric.item_stats(0, 0, 0).shape[-1]
    table = StatsTable(num_classes, len(oof.folds), grid.size, width, metric.finalize, grid.tie_rank())
    ids = np.asarray(oof.ids, dtype=object)
    for name, idx in tqdm(groups, desc="tune cases", unit="case", disable=None if progress is None else not progress):
        case_ids = [str(i) for i in ids[idx]]
        folds = sorted({fold_pos[i] for i in case_ids})
        if len(folds) > 1:
            raise ValueError(
                f"case {name!r} has OOF slices in folds {[oof.folds[k] for k in folds]}: {metric.name} scores whole "
                "cases, so each case must lie in one fold (folds.csv written with competition.volume groups by case)"
            )
        q, aux = oof.take(case_ids)
        q = exclusive_candidates(q) if spec.exclusive else q
        masks = truth.masks(case_ids, size)  # type: ignore[arg-type]
        fold_index = np.full(len(case_ids), folds[0], dtype=np.int64)
        table.add_images(fold_index)
        for c in range(num_classes):
            cell_stats, default = case_cell_stats(
                q[:, c], masks[:, c], grid, None if aux is None else aux[:, c], metric
            )
            table.add(c, fold_index[:1], cell_stats[:, None], default[None])
    return table
