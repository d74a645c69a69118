"""Vectorized per-image statistics of every grid cell for one class of a chunk of OOF images.

For each image the pixel work is: one 256-bin histogram of the quantized probabilities (and one over
the truth pixels), and one connected-components pass per threshold that needs it (some min_size > 1
and any pixel above the threshold). Everything else comes from those:

* pixels above any level (thresholds, top thresholds, max-prob gates): reverse cumulative histogram;
* intersection with the truth at min_size 0: the same over the truth-pixel histogram;
* per component: area = ``np.bincount(labels)``, intersection = ``np.bincount(labels[truth])``;
  surviving area / intersection for every min_size = a ``np.bincount`` over images of the kept
  components;
* min_area, triplet top threshold, max-prob gate and aux gate are per-image keep flags.

The result matches ``kseg.postprocess.apply_postprocess`` cell by cell (see tests/test_tune.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from kseg.postprocess import binarize, components, threshold_level
from kseg.tune.grid import Grid

_CALCHIST_MAX = 1 << 24  # calcHist counts in float32: exact below 2**24 pixels per image


@dataclass(frozen=True)
class ChunkStats:
    """Per-image statistics of one class: grid arrays are int64 [*grid.shape, n]; others [n]."""

    inter: np.ndarray
    pred_area: np.ndarray
    true_area: np.ndarray
    default_inter: np.ndarray  # threshold 0.5, nothing else
    default_pred_area: np.ndarray


def _histogram(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W] -> int64 [256] value counts."""
    if image.size < _CALCHIST_MAX:
        return cv2.calcHist([np.ascontiguousarray(image)], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    return np.bincount(image.ravel(), minlength=256).astype(np.int64)


def above_counts(hist: np.ndarray) -> np.ndarray:
    """Histograms int64 [n, 256] -> counts [n, 257] where column ``L + 1`` = number of values > L.

    So ``above[:, threshold_level(t) + 1]`` is the foreground area at threshold ``t`` (levels -1..255).
    """
    rev = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]  # [:, k] = count(q >= k)
    return np.concatenate([rev, np.zeros((hist.shape[0], 1), dtype=np.int64)], axis=1)


def _gt(above: np.ndarray, value: float) -> np.ndarray:
    """Number of pixels with ``q > threshold_level(value)`` per image [n]."""
    return above[:, threshold_level(value) + 1]


def _component_table(
    q: np.ndarray, truth_idx: list[np.ndarray], level_threshold: float, images: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Components of ``q[i] > level`` for the given images: (image index, area, intersection) [K]."""
    img, area, inter = [], [], []
    for i in images:
        labels, areas = components(binarize(q[i], level_threshold))
        hits = np.bincount(labels.ravel()[truth_idx[i]], minlength=areas.size)
        img.append(np.full(areas.size - 1, i, dtype=np.int64))
        area.append(areas[1:])
        inter.append(hits[1:].astype(np.int64))
    if not img:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(img), np.concatenate(area), np.concatenate(inter)


def _sum_by_image(img: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """int64 [n]: sum of ``values`` per image index (exact for sums below 2**53)."""
    return np.rint(np.bincount(img, weights=values, minlength=n)).astype(np.int64)


def _histograms(q: np.ndarray, truth: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """q uint8 [n, H, W], truth bool [n, H, W] -> (truth pixel indices per image, true_area [n],
    above [n, 257] of every pixel, above [n, 257] of the truth pixels) (see ``above_counts``)."""
    n = q.shape[0]
    truth = truth.reshape(n, -1)
    truth_idx = [np.flatnonzero(truth[i]) for i in range(n)]
    true_area = np.array([t.size for t in truth_idx], dtype=np.int64)
    hist = np.stack([_histogram(q[i]) for i in range(n)]) if n else np.zeros((0, 256), np.int64)
    thist = (
        np.stack([np.bincount(q[i].ravel()[truth_idx[i]], minlength=256) for i in range(n)])
        if n
        else np.zeros((0, 256), np.int64)
    )
    return truth_idx, true_area, above_counts(hist), above_counts(thist.astype(np.int64))


def _surviving(
    q: np.ndarray, truth_idx: list[np.ndarray], grid: Grid, above: np.ndarray, tabove: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Foreground area and intersection left after each (threshold, min_size): int64 [T, S, n] each."""
    n = q.shape[0]
    n_t, n_s = len(grid.thresholds), len(grid.min_sizes)
    surv_area = np.zeros((n_t, n_s, n), dtype=np.int64)
    surv_inter = np.zeros((n_t, n_s, n), dtype=np.int64)
    sizes = np.asarray(grid.min_sizes, dtype=np.int64)
    smallest = int(sizes[sizes > 1].min()) if (sizes > 1).any() else 0
    for ti, t in enumerate(grid.thresholds):
        area0, inter0 = _gt(above, t), _gt(tabove, t)
        surv_area[ti, sizes <= 1] = area0
        surv_inter[ti, sizes <= 1] = inter0
        if not smallest:
            continue
        # images with fewer foreground pixels than the smallest min_size lose everything: no CC needed
        todo = np.flatnonzero(area0 >= smallest)
        img, c_area, c_inter = _component_table(q, truth_idx, t, todo)
        for si, s in enumerate(sizes):
            if s <= 1:
                continue
            kept = c_area >= s
            surv_area[ti, si] = _sum_by_image(img[kept], c_area[kept], n)
            surv_inter[ti, si] = _sum_by_image(img[kept], c_inter[kept], n)
    return surv_area, surv_inter


def _keep_flags(grid: Grid, above: np.ndarray, surv_area: np.ndarray, aux_q: np.ndarray | None) -> np.ndarray:
    """Per-image keep flags bool [T, S, A, G, X, P, n] (min_area, top threshold, max-prob and aux gates)."""
    n_t, n_s, n = surv_area.shape
    n_a, n_p = len(grid.min_areas), len(grid.top_thresholds)
    keep_ap = np.ones((n_t, n_s, n_a, n_p, n), dtype=bool)
    for ai, a in enumerate(grid.min_areas):
        for pi, top in enumerate(grid.top_thresholds):
            if top is None:
                if a > 0:
                    keep_ap[:, :, ai, pi] = surv_area >= a
            else:
                keep_ap[:, :, ai, pi] = _gt(above, top) >= max(a, 1)
    gate = np.stack([np.ones(n, bool) if g <= 0 else _gt(above, g) > 0 for g in grid.max_prob_gates])
    if aux_q is not None:
        aux_q = np.asarray(aux_q, dtype=np.int64).reshape(n)
    aux = np.stack([np.ones(n, bool) if g <= 0 else aux_q > threshold_level(g) for g in grid.aux_gates])  # type: ignore[operator]
    return (
        keep_ap[:, :, :, None, None, :, :]
        & gate[None, None, None, :, None, None, :]
        & aux[None, None, None, None, :, None, :]
    )


def class_grid_stats(
    q: np.ndarray, truth: np.ndarray, grid: Grid, aux_q: np.ndarray | None = None, boxes: np.ndarray | None = None
) -> ChunkStats:
    """Statistics of every grid cell for one class.

    q: uint8 [n, H, W] quantized probabilities; truth: bool [n, H, W]; aux_q: uint8 [n] quantized
    aux-head probabilities (required when the grid has an aux gate > 0); boxes: int [n, 4] (top, bottom, left,
    right) to score each image on its box only (tiles: ``kseg.tiling.owned_boxes``, see ``boxed_grid_stats``).
    Returns ``ChunkStats`` with inter / pred_area int64 [*grid.shape, n] and true_area [n].
    """
    if boxes is not None:
        return boxed_grid_stats(q, truth, grid, aux_q, boxes)
    if q.dtype != np.uint8 or q.ndim != 3:
        raise ValueError(f"class_grid_stats: q must be uint8 [n, H, W], got {q.dtype} {q.shape}")
    if truth.shape != q.shape:
        raise ValueError(f"class_grid_stats: truth shape {truth.shape} != q shape {q.shape}")
    if grid.uses_aux and aux_q is None:
        raise ValueError("tune grid has aux gates > 0 but no aux-head OOF probabilities (oof_aux.npy)")
    truth_idx, true_area, above, tabove = _histograms(q, truth)
    surv_area, surv_inter = _surviving(q, truth_idx, grid, above, tabove)
    keep = _keep_flags(grid, above, surv_area, aux_q)  # [T, S, A, G, X, P, n]
    inter = surv_inter[:, :, None, None, None, None, :] * keep
    pred = surv_area[:, :, None, None, None, None, :] * keep
    return ChunkStats(
        inter=inter,
        pred_area=pred,
        true_area=true_area,
        default_inter=_gt(tabove, 0.5).copy(),
        default_pred_area=_gt(above, 0.5).copy(),
    )


def boxed_grid_stats(
    q: np.ndarray, truth: np.ndarray, grid: Grid, aux_q: np.ndarray | None, boxes: np.ndarray
) -> ChunkStats:
    """``class_grid_stats`` of each image cropped to its box int [n, 4] (top, bottom, left, right).

    Tiles of slides count only the pixels they hold alone (``kseg.tiling.owned_boxes``), so a slide's statistics
    summed over its tiles count every pixel once; components (``min_size``) are those of the cropped tile.
    Images sharing a box (all but a slide's last row / column of tiles) are computed together.
    """
    n = q.shape[0]
    uniq, inverse = np.unique(np.asarray(boxes, dtype=np.int64).reshape(n, 4), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    inter, pred = np.zeros((2, *grid.shape, n), dtype=np.int64)
    true_area, default_inter, default_pred = np.zeros((3, n), dtype=np.int64)
    for k, (top, bottom, left, right) in enumerate(uniq.tolist()):
        sel = np.flatnonzero(inverse == k)
        part = class_grid_stats(
            np.ascontiguousarray(q[sel, top:bottom, left:right]),
            truth[sel, top:bottom, left:right],
            grid,
            None if aux_q is None else np.asarray(aux_q)[sel],
        )
        inter[..., sel], pred[..., sel] = part.inter, part.pred_area
        true_area[sel], default_inter[sel], default_pred[sel] = (
            part.true_area,
            part.default_inter,
            part.default_pred_area,
        )
    return ChunkStats(inter, pred, true_area, default_inter, default_pred)
