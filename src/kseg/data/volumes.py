"""Volumes of 2D slices (MRI / CT scans): which slices of which case an image id is, and 2.5D neighbours.

A competition spec with ``volume:`` (``VolumeSpec``) names each image id's case (one 3D scan: the unit the
slices are stacked within, folds keep whole and a 3D metric scores) and its slice index with a regex of named
groups ``case`` and ``slice``. Slices are ordered by the numeric value of ``slice`` (``slice_0010`` after
``slice_0009``, never as strings). The 2.5D input of a slice stacks ``2 * context + 1`` slices as channels:
the slices ``-context * stride .. +context * stride`` positions away in that order, the slice itself in the
middle; a neighbour past either end of its volume repeats the edge slice (``np.clip`` of the position).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kseg.typed import ConfigError, bounded

__all__ = ["VolumeSpec", "neighbour_index", "volume_order"]

REQUIRED_GROUPS = ("case", "slice")


@dataclass(frozen=True)
class VolumeSpec:
    """``volume: {pattern: '^(?P<case>case\\d+_day\\d+)_slice_(?P<slice>\\d+)$', context: 2, stride: 1}``.

    ``pattern`` must have the named groups ``case`` (the volume) and ``slice`` (digits, its numeric position);
    other named groups may serve ``competition.image_path``. ``context`` neighbours on each side, ``stride``
    slices apart, are stacked as input channels (``context: 0`` = one slice, plain 2D).
    """

    pattern: str
    context: int = bounded(2, ge=0)
    stride: int = bounded(1, ge=1)

    def __post_init__(self) -> None:
        try:
            compiled = re.compile(self.pattern)
        except re.error as e:
            raise ConfigError(f"competition.volume.pattern: {self.pattern!r}: {e}") from e
        missing = [g for g in REQUIRED_GROUPS if g not in compiled.groupindex]
        if missing:
            raise ConfigError(
                f"competition.volume.pattern: {self.pattern!r} has no named group {missing[0]!r} "
                f"(it needs (?P<case>...) and (?P<slice>...))"
            )

    @property
    def channels(self) -> int:
        """Slices stacked per input: ``2 * context + 1``."""
        return 2 * self.context + 1

    @property
    def offsets(self) -> np.ndarray:
        """int64 [channels]: positions of the stacked slices relative to the centre one."""
        return np.arange(-self.context, self.context + 1, dtype=np.int64) * self.stride

    def fields(self, ids: Sequence[str] | pd.Series) -> pd.DataFrame:
        """One row per id, one string column per named group of ``pattern``; an id it misses raises."""
        as_str = pd.Series(ids, dtype=object).astype(str).reset_index(drop=True)
        parts = as_str.str.extract(self.pattern, expand=True)
        bad = parts.isna().any(axis=1).to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"competition.volume.pattern {self.pattern!r} does not match image id {as_str.iloc[row]!r} "
                f"(or leaves one of its groups empty)"
            )
        return parts

    def keys(self, ids: Sequence[str] | pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """(case str object [N], slice index int64 [N]) of image ids; ``slice`` must be digits."""
        parts = self.fields(ids)
        digits = parts["slice"].str.fullmatch(r"\d+").to_numpy(dtype=bool)
        if not digits.all():
            row = int(np.flatnonzero(~digits)[0])
            raise ValueError(
                f"competition.volume.pattern: slice {parts['slice'].iloc[row]!r} of image id "
                f"{pd.Series(ids).iloc[row]!r} is not a number"
            )
        return parts["case"].to_numpy(dtype=object), parts["slice"].astype(np.int64).to_numpy()


def volume_order(case: np.ndarray, slice_index: np.ndarray) -> np.ndarray:
    """int64 [N]: the permutation sorting images by case (as strings), then numerically by slice.

    Two images with the same case and slice index raise (one slice per position).
    """
    order = np.lexsort((slice_index, case.astype(str)))
    c, s = case[order].astype(str), slice_index[order]
    same = (c[1:] == c[:-1]) & (s[1:] == s[:-1])
    if same.any():
        i = int(np.flatnonzero(same)[0])
        raise ValueError(f"case {c[i]!r} has slice {int(s[i])} twice")
    return order


def neighbour_index(case: np.ndarray, slice_index: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """int64 [N, K]: for each image, the rows of its stacked slices (``offsets`` positions away in its case).

    Positions are ranks in the numeric slice order of the case's images present here; a neighbour past
    either end repeats the edge slice. ``offsets`` 0 maps each image to itself.
    """
    n = len(case)
    if n == 0:
        return np.zeros((0, len(offsets)), dtype=np.int64)
    order = volume_order(case, slice_index)
    sorted_case = case[order].astype(str)
    starts = np.flatnonzero(np.r_[True, sorted_case[1:] != sorted_case[:-1]])
    lengths = np.diff(np.r_[starts, n])
    start_of = np.repeat(starts, lengths)  # per sorted position: first position of its case
    end_of = start_of + np.repeat(lengths, lengths) - 1
    pos = np.arange(n)[:, None] + offsets[None, :]
    pos = np.clip(pos, start_of[:, None], end_of[:, None])  # past an end: the edge slice
    out = np.empty((n, len(offsets)), dtype=np.int64)
    out[order] = order[pos]
    return out
