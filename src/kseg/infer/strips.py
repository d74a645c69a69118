"""Post-processing and RLE of a slide-sized probability map in row strips, in memory bounded by the strip.

The same rule as ``kseg.postprocess.apply_postprocess`` (threshold, min size on 8-connected components,
min area, max-prob gate, triplet rule, exclusive classes), computed strip by strip so that the result is
identical to post-processing the whole map at once:

* pass 1 labels each strip's components (``cv2.connectedComponentsWithStats``) and joins the labels that
  touch across a strip boundary (8-connectivity: the last row of one strip against the first row of the
  next, straight and diagonal); ``scipy.sparse.csgraph.connected_components`` over these joins gives every
  slide component and its area, so a glomerulus cut by a strip boundary is measured whole. Memory: one
  strip + O(components).
* pass 2 labels the strips again (deterministic, same labels), keeps the pixels of large enough slide
  components and feeds them to ``kseg.data.rle_stream.StripEncoder``.

Gates that need the whole map (max prob, min area, triplet) are decided after pass 1. The aux gate needs
an image-level head and is refused for tiled slides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from kseg.data.rle import RleDialect
from kseg.data.rle_stream import StripEncoder
from kseg.postprocess import CONNECTIVITY, ClassParams, binarize, exclusive_candidates

__all__ = ["StripReader", "encode_strips", "strip_bounds"]

StripReader = Callable[[int, int], np.ndarray]
"""``read(y0, y1)`` -> uint8 quantized probabilities [C, y1 - y0, W] of rows y0..y1."""


def strip_bounds(height: int, strip: int) -> list[tuple[int, int]]:
    """Row ranges [(y0, y1)] of strips of ``strip`` rows covering ``height``."""
    return [(y, min(y + strip, height)) for y in range(0, height, strip)]


def _boundary_pairs(prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """int64 [P, 2] pairs of global labels (0 = background) 8-adjacent across a strip boundary."""
    pairs = [np.stack([prev, cur], 1), np.stack([prev[:-1], cur[1:]], 1), np.stack([prev[1:], cur[:-1]], 1)]
    both = np.concatenate(pairs)
    return both[(both[:, 0] > 0) & (both[:, 1] > 0)]


def _labels(mask: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(count, labels int32 [h, W], areas int64 [count]) of a strip; label 0 is the background."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.view(np.uint8), connectivity=CONNECTIVITY, ltype=cv2.CV_32S
    )
    areas = stats[:, cv2.CC_STAT_AREA].astype(np.int64)
    areas[0] = 0
    return n, labels, areas


class _ClassPass:
    """Pass-1 bookkeeping of one class: component areas, cross-strip joins, gate counts."""

    def __init__(self, p: ClassParams) -> None:
        self.p = p
        self.label = p.min_size > 1
        self.qmax = 0
        self.top = 0  # pixels above top_threshold (triplet rule)
        self.area = 0  # foreground pixels (without min size)
        self.offsets: list[int] = []
        self.areas: list[np.ndarray] = [np.zeros(1, np.int64)]  # global label 0 = background
        self.pairs: list[np.ndarray] = []
        self.last: np.ndarray | None = None
        self.keep: np.ndarray | None = None

    def add(self, q: np.ndarray) -> None:
        self.qmax = max(self.qmax, int(q.max(initial=0)))
        if self.p.top_threshold is not None:
            self.top += int(np.count_nonzero(binarize(q, self.p.top_threshold)))
        mask = binarize(q, self.p.threshold)
        self.area += int(np.count_nonzero(mask))
        if not self.label:
            return
        n, labels, areas = _labels(mask)
        offset = sum(a.size for a in self.areas) - 1  # global id = offset + local label (local >= 1)
        self.offsets.append(offset)
        self.areas.append(areas[1:])
        glob = np.where(labels > 0, labels + offset, 0)
        if self.last is not None:
            self.pairs.append(_boundary_pairs(self.last, glob[0]))
        self.last = glob[-1].copy()

    def finish(self) -> int:
        """Decide the kept components; returns the surviving pixel count (0 = empty mask)."""
        p = self.p
        if p.max_prob_gate > 0 and not binarize(np.array([self.qmax], np.uint8), p.max_prob_gate)[0]:
            return 0
        if p.top_threshold is not None and self.top < max(p.min_area, 1):
            return 0
        survive = self.area
        if self.label:
            areas = np.concatenate(self.areas)
            pairs = np.concatenate(self.pairs) if self.pairs else np.zeros((0, 2), np.int64)
            graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(areas.size, areas.size))
            _, comp = connected_components(graph, directed=False)
            comp_area = np.bincount(comp, weights=areas).astype(np.int64)
            self.keep = comp_area[comp] >= p.min_size
            self.keep[0] = False
            survive = int(areas[self.keep].sum())
        if p.top_threshold is None and p.min_area > 0 and survive < p.min_area:
            return 0
        return survive

    def mask(self, q: np.ndarray, k: int) -> np.ndarray:
        """Final bool mask [h, W] of strip ``k`` (pass 2)."""
        mask = binarize(q, self.p.threshold)
        if self.keep is None:
            return mask
        _, labels, _ = _labels(mask)
        glob = np.where(labels > 0, labels + self.offsets[k], 0)
        return self.keep[glob]


def _strip_q(read: StripReader, y0: int, y1: int, exclusive: bool) -> np.ndarray:
    q = read(y0, y1)
    return exclusive_candidates(q) if exclusive else q


def encode_strips(
    read: StripReader,
    shape: tuple[int, int],
    params: Sequence[ClassParams],
    dialect: RleDialect,
    strip: int = 1024,
    exclusive: bool = False,
) -> tuple[list[str], list[int]]:
    """RLE per class of the post-processed [C, H, W] map behind ``read``; also the mask areas per class.

    Equal to ``encode(apply_postprocess(q, params, exclusive=exclusive)[c])`` for every class ``c``.
    """
    gated = [c for c, p in enumerate(params) if p.aux_gate > 0]
    if gated:
        raise ValueError(f"post-processing of classes {gated} uses aux_gate, which tiled slides cannot apply")
    bounds = strip_bounds(shape[0], strip)
    passes = [_ClassPass(p) for p in params]
    for y0, y1 in bounds:
        q = _strip_q(read, y0, y1, exclusive)
        for c, cp in enumerate(passes):
            cp.add(q[c])
    areas = [cp.finish() for cp in passes]
    encoders = [StripEncoder(shape, dialect) if a else None for a in areas]
    if any(encoders):
        for k, (y0, y1) in enumerate(bounds):
            q = _strip_q(read, y0, y1, exclusive)
            for c, (cp, enc) in enumerate(zip(passes, encoders, strict=True)):
                if enc is not None:
                    enc.add(cp.mask(q[c], k))
    rles = [enc.finish() if enc is not None else dialect.empty for enc in encoders]
    return rles, areas
