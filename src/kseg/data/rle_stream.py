"""Bounded-memory RLE for masks larger than memory: strips in, the one-shot string out; windows out of runs.

:class:`StripEncoder` takes an [H, W] mask as horizontal strips, top to bottom, and returns exactly
``kseg.data.rle.encode(mask, dialect)``. Row order is natural (runs only join across a strip boundary).
Column order is the hard part: pixel numbers run down each column over the *whole* height, so one strip
holds a piece of every column. Each strip's runs are numbered in global column-major pixel numbers
(``x * H + y``); pieces of one column in consecutive strips touch (end == next start) and are merged after
a sort of the runs, which also joins a run that leaves the bottom of column x and goes on at the top of
column x + 1 (as the one-shot encoder does). Memory is O(runs), never O(H * W).

:func:`mask_runs` parses an RLE once into 0-based absolute runs; :func:`decode_window` paints any
window of the mask from them (vectorized over run pieces), so tile loaders never decode a whole slide.
"""

from __future__ import annotations

import cv2
import numpy as np

from kseg.data.rle import KAGGLE, RleDialect
from kseg.data.rle import _format_runs as format_runs  # the codec's writer: one string format
from kseg.data.rle import _problems as rle_problems  # the codec's parser and checks

__all__ = ["StripEncoder", "MaskRuns", "mask_runs", "decode_window"]


class StripEncoder:
    """Encode an [H, W] mask fed as row strips ``add(strip [h_i, W])`` top to bottom; ``finish()`` -> str."""

    def __init__(self, shape: tuple[int, int], dialect: RleDialect = KAGGLE) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.dialect = dialect
        self.row = 0
        self._starts: list[np.ndarray] = []
        self._ends: list[np.ndarray] = []

    def add(self, strip: np.ndarray) -> None:
        """Append the next rows [h_i, W] (nonzero = foreground)."""
        h, w = self.shape
        strip = np.asarray(strip)
        if strip.ndim != 2 or strip.shape[1] != w or self.row + strip.shape[0] > h:
            raise ValueError(
                f"strip of shape {strip.shape} at row {self.row} does not fit a mask of shape {self.shape}"
            )
        n = strip.shape[0]
        if n == 0:
            return
        binary = (strip != 0).view(np.uint8)
        if self.dialect.order == "row":
            padded = np.zeros(n * w + 2, dtype=np.int8)
            padded[1:-1] = binary.ravel()
            edges = np.flatnonzero(np.diff(padded)).astype(np.int64)
            first, end = edges[0::2] + self.row * w, edges[1::2] + self.row * w
        else:  # one line per column, zero-padded on both ends so every run opens and closes in its line
            padded = np.zeros((w, n + 2), dtype=np.int8)
            padded[:, 1:-1] = cv2.transpose(np.ascontiguousarray(binary))  # much faster than numpy's .T copy
            edges = np.flatnonzero(np.diff(padded.ravel())).astype(np.int64)
            cols, pos = np.divmod(edges, n + 2)
            flat = cols * h + self.row + pos
            first, end = flat[0::2], flat[1::2]
        self._starts.append(first)
        self._ends.append(end)
        self.row += n

    def finish(self) -> str:
        """The RLE string of the whole mask (every row must have been added)."""
        if self.row != self.shape[0]:
            raise ValueError(f"only {self.row} of {self.shape[0]} rows were added")
        first = np.concatenate(self._starts) if self._starts else np.zeros(0, np.int64)
        end = np.concatenate(self._ends) if self._ends else np.zeros(0, np.int64)
        if self.dialect.order == "column" and len(self._starts) > 1:
            order = np.argsort(first, kind="stable")
            first, end = first[order], end[order]
        new = np.ones(first.size, dtype=bool)
        new[1:] = first[1:] != end[:-1]  # a run starting where the previous ended continues it
        last = np.append(new[1:], True)[: first.size]
        runs = np.empty(2 * int(new.sum()), dtype=np.int64)
        runs[0::2], runs[1::2] = first[new], end[last] - first[new]
        self._starts, self._ends = [], []
        return format_runs(runs, self.dialect)


class MaskRuns:
    """0-based absolute runs of one mask: ``first`` int64 [R], ``end`` int64 [R] (exclusive), sorted."""

    def __init__(self, first: np.ndarray, end: np.ndarray, shape: tuple[int, int], order: str) -> None:
        self.first, self.end = first, end
        self.shape = (int(shape[0]), int(shape[1]))
        self.order = order

    @property
    def area(self) -> int:
        return int((self.end - self.first).sum())

    def pixel(self, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(y, x) of 0-based foreground pixel numbers ``k`` [N]."""
        h, w = self.shape
        return (k % h, k // h) if self.order == "column" else (k // w, k % w)


def mask_runs(rle: str | float | None, shape: tuple[int, int], dialect: RleDialect = KAGGLE) -> MaskRuns:
    """Parse and check ``rle`` (an [H, W] mask in ``dialect``) once; raises ValueError naming the problem."""
    problems, first, lengths = rle_problems(rle, (int(shape[0]), int(shape[1])), dialect)
    if problems:
        raise ValueError(problems[0])
    assert first is not None and lengths is not None
    return MaskRuns(first, first + lengths, shape, dialect.order)


def decode_window(runs: MaskRuns, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """uint8 [h, w] of the mask's window at (y0, x0); pixels outside the mask are 0."""
    out = np.zeros((h, w), dtype=np.uint8)
    H, W = runs.shape  # noqa: N806
    ya, yb, xa, xb = max(y0, 0), min(y0 + h, H), max(x0, 0), min(x0 + w, W)
    if ya >= yb or xa >= xb or runs.first.size == 0:
        return out
    column = runs.order == "column"
    # One line per column (column order) or row: its segment [lo, lo + span) of pixel numbers in the window.
    lines = np.arange(xa, xb) if column else np.arange(ya, yb)
    offset, span = (ya, yb - ya) if column else (xa, xb - xa)
    lo = lines.astype(np.int64) * (H if column else W) + offset
    a = np.searchsorted(runs.end, lo, side="right")  # first run ending after the segment start
    b = np.searchsorted(runs.first, lo + span, side="left")  # runs starting before the segment end
    counts = np.maximum(b - a, 0)
    line = np.repeat(np.arange(lines.size), counts)
    run = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(a, counts)
    start = np.clip(runs.first[run] - lo[line], 0, span)
    stop = np.clip(runs.end[run] - lo[line], 0, span)
    diff = np.zeros((lines.size, span + 1), dtype=np.int32)
    np.add.at(diff, (line, start), 1)
    np.add.at(diff, (line, stop), -1)
    painted = (np.cumsum(diff, axis=1)[:, :span] > 0).view(np.uint8)
    out[ya - y0 : yb - y0, xa - x0 : xb - x0] = painted.T if column else painted
    return out
