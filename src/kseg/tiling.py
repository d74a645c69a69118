"""Tiling of images larger than memory (the ``tile:`` config block): grid, blend windows and tile ids.

Sizes: the model sees tiles of ``tile.size`` pixels; a tile covers ``size * downscale`` slide pixels
(its *window*); neighbouring tiles share ``overlap`` model pixels, so windows start every
``(size - overlap) * downscale`` slide pixels, the last one moved back to end at the slide's edge.
Predictions are blended with a weight window (``flat``: 1 everywhere; ``gaussian``: a separable Gaussian
of standard deviation ``sigma * window``). Every tile's weights are the outer product of one 1-D window
per axis and the grid is a product of one 1-D grid per axis, so the sum of weights over the tiles
covering a pixel is the product of two 1-D sums (:func:`weight_sums`): nothing of slide size is needed
for the normalisation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kseg.registry import Registry
from kseg.typed import ConfigError, bounded, choice

__all__ = [
    "TileConfig",
    "WINDOWS",
    "starts",
    "window_1d",
    "weight_sums",
    "tile_id",
    "parse_tile_id",
    "slide_ids",
    "slide_groups",
    "owned_boxes",
    "box_masks",
]


@dataclass(frozen=True)
class TileConfig:
    """``tile:`` keys; ``size: 0`` (default) = whole images, no tiling."""

    size: int = bounded(0, ge=0, note="(model pixels per tile side; 0 = whole images)")
    downscale: int = bounded(1, ge=1)  # slide pixels per model pixel (HuBMAP winners: 2-4)
    overlap: int = bounded(0, ge=0)  # model pixels shared by neighbouring tiles at predict time (< size)
    window: str = choice("kseg.tiling:WINDOWS", "gaussian")  # blend weights of overlapping tiles
    sigma: float = bounded(0.125, gt=0, note="(Gaussian sd as a share of the tile)")
    mask_fraction: float = bounded(0.5, ge=0, le=1)  # share of training tiles centred on a mask pixel
    jitter: float = bounded(0.25, ge=0, le=0.5)  # random shift of a mask-centred tile, share of the tile
    per_slide: int = bounded(16, ge=1)  # training tiles drawn per slide and epoch
    strip: int = bounded(1024, ge=1)  # slide rows per strip of post-processing and RLE encoding
    canvas_dir: str = ""  # folder of the disk-backed prediction canvas ('' = the system temp folder)

    def __post_init__(self) -> None:
        if self.size and self.overlap >= self.size:
            raise ConfigError(f"tile.overlap: {self.overlap} must be < tile.size {self.size}")

    @property
    def enabled(self) -> bool:
        return self.size > 0

    @property
    def span(self) -> int:
        """Slide pixels per tile side (the window)."""
        return self.size * self.downscale

    @property
    def step(self) -> int:
        """Slide pixels between the starts of neighbouring predict tiles."""
        return (self.size - self.overlap) * self.downscale


WINDOWS: Registry[Callable[[int, float], np.ndarray]] = Registry("tile blend window")


@WINDOWS.register("flat")
def _flat(n: int, sigma: float) -> np.ndarray:
    return np.ones(n, dtype=np.float32)


@WINDOWS.register("gaussian")
def _gaussian(n: int, sigma: float) -> np.ndarray:
    """exp(-d^2 / 2 (sigma n)^2) around the centre, floored at 1e-3 so edge pixels still count."""
    d = np.arange(n, dtype=np.float64) - (n - 1) / 2
    return np.maximum(np.exp(-0.5 * (d / (sigma * n)) ** 2), 1e-3).astype(np.float32)


def window_1d(cfg: TileConfig) -> np.ndarray:
    """Blend weights float32 [span] along one axis of a tile window."""
    return WINDOWS.get(cfg.window)(cfg.span, cfg.sigma)


def starts(length: int, span: int, step: int) -> np.ndarray:
    """Window starts int64 [K] along an axis of ``length``: 0, step, ..., the last one ending at the edge.

    A slide shorter than one window gets the single start 0 (the window is zero-padded).
    """
    if length <= span:
        return np.zeros(1, dtype=np.int64)
    out = np.arange(0, length - span, step, dtype=np.int64)
    return np.append(out, length - span)


def weight_sums(length: int, grid: np.ndarray, window: np.ndarray) -> np.ndarray:
    """float32 [length]: sum over the windows at ``grid`` of ``window`` at each position."""
    total = np.zeros(length + window.size, dtype=np.float64)
    for s in grid.tolist():  # one add per tile row / column, not per pixel
        total[s : s + window.size] += window
    return total[:length].astype(np.float32)


_SUFFIX = r"@(?P<y>\d+)_(?P<x>\d+)$"  # what a tile id adds to its slide's id
_TILE_ID = re.compile(r"^(?P<slide>.+)" + _SUFFIX)


def tile_id(slide: str, y0: int, x0: int) -> str:
    """Id of the tile of ``slide`` whose window starts at (y0, x0): ``<slide>@<y0>_<x0>``."""
    return f"{slide}@{int(y0)}_{int(x0)}"


def parse_tile_id(text: str) -> tuple[str, int, int] | None:
    """(slide, y0, x0) of a tile id, None for a plain image id."""
    m = _TILE_ID.match(text)
    return (m["slide"], int(m["y"]), int(m["x"])) if m else None


def slide_ids(ids: Sequence[str]) -> np.ndarray:
    """object [n]: the slide of each id (a tile id's ``<slide>``; a plain image id is its own slide)."""
    series = pd.Series(list(map(str, ids)), dtype=object)
    return series.str.replace(_SUFFIX, "", regex=True).to_numpy(dtype=object)


def slide_groups(ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(group int64 [n], slides object [G]): ``slides[group[i]]`` is the slide of ``ids[i]`` (first-seen order).

    The grouping of tiles that a per-image metric scores as one whole-slide item (``Metric.score_stats``).
    """
    group, slides = pd.factorize(pd.Series(slide_ids(ids), dtype=object))
    return group.astype(np.int64), np.asarray(slides, dtype=object)


def owned_boxes(origins: np.ndarray, sizes: np.ndarray, span: int) -> np.ndarray:
    """int64 [n, 4] (top, bottom, left, right) in window pixels: the pixels that windows at ``origins`` [n, 2]
    (y0, x0) of slides of ``sizes`` [n, 2] (H, W) hold alone in the non-overlapping grid (``starts(length, span,
    span)``, whose last window is moved back to end at the edge): from the end of the window before (the next
    multiple of ``span``) to the end of the window or of the slide. They partition each slide, so statistics
    summed over them count every slide pixel once (nothing of the overlap twice, nothing past the edge).
    """
    origins = np.asarray(origins, dtype=np.int64).reshape(-1, 2)
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
    first = -(-origins // span) * span - origins
    last = np.minimum(span, sizes - origins)
    bad = np.flatnonzero((last <= first).any(axis=1) | (origins < 0).any(axis=1))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"window at (y0, x0) = {tuple(origins[i].tolist())} of a {tuple(sizes[i].tolist())} slide holds no "
            f"pixel of its own in the grid of {span}-pixel windows"
        )
    return np.stack([first[:, 0], last[:, 0], first[:, 1], last[:, 1]], axis=1)


def box_masks(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """bool [n, H, W]: True inside each box [n, 4] (top, bottom, left, right) of an (H, W) window."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    rows, cols = np.arange(shape[0]), np.arange(shape[1])
    inside_rows = (rows >= boxes[:, 0:1]) & (rows < boxes[:, 1:2])  # [n, H]
    inside_cols = (cols >= boxes[:, 2:3]) & (cols < boxes[:, 3:4])  # [n, W]
    return inside_rows[:, :, None] & inside_cols[:, None, :]
