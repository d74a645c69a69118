"""3D volumes of a case and their Hausdorff distance (UW-Madison GI Tract's ``dice_hausdorff``).

Slices are grouped into volumes by case and stacked in numeric slice order (``case_groups``, on
``kseg.data.volumes.volume_order``; the keys come from ``CompetitionSpec.volume_keys``).
``hausdorff_distance`` is the symmetric Hausdorff distance of two binary volumes with every coordinate
divided by the volume's size along its axis (the unit cube: "pixel locations normalized by image size",
slice depth 1) and the result divided by the unit cube's diagonal ``sqrt(ndim)``, so it lies in [0, 1) for
any two non-empty volumes. Both empty: NaN (no distance; the metric decides, see
``kseg.metrics.registry.DiceHausdorff``); exactly one empty: 1, the largest distance.

Exact, not a surface approximation, but computed on surfaces: the voxel of a mask nearest to a voxel outside
it always lies on the mask's surface (a voxel with a 6-neighbour outside: stepping from an inner voxel towards
the outside voxel gets closer), and voxels inside both masks are at distance 0. So only the voxels of one mask
outside the other are queried, against a ``scipy.spatial.cKDTree`` of the other's surface voxels, in unit-cube
coordinates. ``Hausdorff(true)`` builds the truth's tree once for many predictions (the tuner's cells).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from kseg.data.volumes import volume_order

__all__ = ["Hausdorff", "case_groups", "hausdorff_distance", "surface"]


def _member(sorted_idx: np.ndarray, query: np.ndarray) -> np.ndarray:
    """bool [len(query)]: which values of ``query`` are in the sorted int array ``sorted_idx``."""
    pos = np.searchsorted(sorted_idx, query)
    hit = np.zeros(len(query), dtype=bool)
    ok = pos < len(sorted_idx)
    hit[ok] = sorted_idx[pos[ok]] == query[ok]
    return hit


def surface(idx: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The flat indices (sorted int64 [P]) of a mask's voxels with a face neighbour outside it.

    ``idx``: sorted flat (C order) indices of the mask's voxels in a volume of ``shape``; voxels on the
    volume's border count as surface (a superset is still exact: the nearest voxel is among them).
    """
    coords = np.unravel_index(idx, shape)
    strides = np.cumprod((*shape[1:], 1)[::-1])[::-1]
    inner = np.ones(len(idx), dtype=bool)
    for axis, stride in enumerate(strides):
        inner &= (coords[axis] > 0) & (coords[axis] < shape[axis] - 1)
        inner[inner] = _member(idx, idx[inner] - stride) & _member(idx, idx[inner] + stride)
    return idx[~inner]


class Hausdorff:
    """Normalised symmetric Hausdorff distance of predictions to one truth volume (``hausdorff_distance``)."""

    def __init__(self, true: np.ndarray) -> None:
        true = np.asarray(true) != 0
        self.shape = true.shape
        self.spacing = 1.0 / np.asarray(self.shape, dtype=np.float64)  # the unit cube
        self.true_idx = np.flatnonzero(true)
        self._tree = cKDTree(self._points(surface(self.true_idx, self.shape))) if self.true_idx.size else None

    def _points(self, idx: np.ndarray) -> np.ndarray:
        """float64 [P, ndim] unit-cube coordinates of flat indices."""
        return np.stack(np.unravel_index(idx, self.shape), axis=1) * self.spacing

    def __call__(self, pred: np.ndarray) -> float:
        """Distance of bool ``pred`` (the truth's shape): NaN both empty, 1 one empty, 0 equal, else in [0, 1)."""
        pred = np.asarray(pred) != 0
        if pred.shape != self.shape:
            raise ValueError(f"hausdorff_distance: pred shape {pred.shape} != true shape {self.shape}")
        pred_idx = np.flatnonzero(pred)
        if not pred_idx.size and not self.true_idx.size:
            return math.nan
        if not pred_idx.size or not self.true_idx.size:
            return 1.0
        pred_out = pred_idx[~_member(self.true_idx, pred_idx)]  # predicted voxels outside the truth
        true_out = self.true_idx[~_member(pred_idx, self.true_idx)]
        d = 0.0
        if pred_out.size:
            d = float(self._tree.query(self._points(pred_out))[0].max())  # type: ignore[union-attr]
        if true_out.size:
            tree = cKDTree(self._points(surface(pred_idx, self.shape)))
            d = max(d, float(tree.query(self._points(true_out))[0].max()))
        return d / math.sqrt(len(self.shape))


def hausdorff_distance(pred: np.ndarray, true: np.ndarray) -> float:
    """Normalised symmetric Hausdorff distance of binary volumes [Z, H, W] (any ndim >= 1; nonzero = inside).

    Coordinates are divided by the shape (unit cube), the distance by ``sqrt(ndim)``. NaN when both are
    empty, 1.0 when exactly one is, 0.0 when they are equal.
    """
    return Hausdorff(true)(pred)


def case_groups(case: np.ndarray, slice_index: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """[(case, int64 positions of its slices in numeric slice order)], cases sorted by name.

    case: str [N]; slice_index: int [N] (``CompetitionSpec.volume_keys``); a repeated (case, slice) raises.
    """
    case = np.asarray(case, dtype=object)
    slice_index = np.asarray(slice_index, dtype=np.int64)
    if case.shape != slice_index.shape or case.ndim != 1:
        raise ValueError(f"case_groups: case {case.shape} and slice index {slice_index.shape} must both be [N]")
    if case.size == 0:
        return []
    order = volume_order(case, slice_index)
    names = case[order].astype(str)
    starts = np.flatnonzero(np.r_[True, names[1:] != names[:-1]])
    return [(str(names[s]), part) for s, part in zip(starts, np.split(order, starts[1:]), strict=True)]
