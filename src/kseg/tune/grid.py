"""The post-processing search grid: a cartesian product of per-class parameter values.

Axes (in this order, C order over cells): threshold, min_size, min_area, max_prob_gate, aux_gate,
top_threshold. ``top_threshold`` holds ``None`` (no triplet rule) first, then the triplet top
thresholds when ``tune.triplet``. Ties between cells are broken by ``Grid.tie_rank`` (the untuned default
first, then the more conservative cell; defined in ``kseg.tune.search``), not by this order.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from kseg.config import TuneConfig
from kseg.postprocess import ClassParams

AXES = ("threshold", "min_size", "min_area", "max_prob_gate", "aux_gate", "top_threshold")
CONFIG_NAMES = ("thresholds", "min_sizes", "min_areas", "max_prob_gates", "aux_gates", "top_thresholds")  # in cfg.tune


@dataclass(frozen=True)
class Grid:
    """Values per axis; ``cells()`` / ``params(i)`` enumerate ``ClassParams`` in C order."""

    thresholds: tuple[float, ...]
    min_sizes: tuple[int, ...] = (0,)
    min_areas: tuple[int, ...] = (0,)
    max_prob_gates: tuple[float, ...] = (0.0,)
    aux_gates: tuple[float, ...] = (0.0,)
    top_thresholds: tuple[float | None, ...] = (None,)

    def __post_init__(self) -> None:
        for axis, name, values in zip(AXES, CONFIG_NAMES, self.axes, strict=True):
            if not values:
                raise ValueError(f"tune.{name}: no values")
            for v in values:
                try:
                    ClassParams(**{axis: v})
                except ValueError as e:
                    raise ValueError(f"tune.{name}: {e}") from None
            if len(set(values)) != len(values):
                raise ValueError(f"tune.{name}: duplicate values in {list(values)}")

    @classmethod
    def from_config(cls, tune: TuneConfig) -> Grid:
        """The grid of ``cfg.tune`` (top thresholds only with ``tune.triplet``)."""
        tops: tuple[float | None, ...] = (None,) + (tuple(tune.top_thresholds) if tune.triplet else ())
        return cls(
            thresholds=tuple(float(t) for t in tune.thresholds),
            min_sizes=tuple(int(s) for s in tune.min_sizes),
            min_areas=tuple(int(a) for a in tune.min_areas),
            max_prob_gates=tuple(float(g) for g in tune.max_prob_gates),
            aux_gates=tuple(float(g) for g in tune.aux_gates),
            top_thresholds=tops,
        )

    @property
    def axes(self) -> tuple[tuple[Any, ...], ...]:
        return (
            self.thresholds,
            self.min_sizes,
            self.min_areas,
            self.max_prob_gates,
            self.aux_gates,
            self.top_thresholds,
        )

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.axes)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def uses_aux(self) -> bool:
        return any(g > 0 for g in self.aux_gates)

    def params(self, index: int) -> ClassParams:
        """``ClassParams`` of flat cell ``index``."""
        idx = np.unravel_index(int(index), self.shape)
        return ClassParams(**{axis: values[i] for axis, values, i in zip(AXES, self.axes, idx, strict=True)})

    def default_cell(self) -> int | None:
        """Flat index of the untuned default ``ClassParams()`` (threshold 0.5, nothing else), None if absent."""
        default = ClassParams()
        try:
            idx = tuple(values.index(getattr(default, axis)) for axis, values in zip(AXES, self.axes, strict=True))
        except ValueError:
            return None
        return int(np.ravel_multi_index(idx, self.shape))

    def tie_rank(self) -> np.ndarray:
        """int64 [cells]: each cell's rank among tied cells, 0 = chosen first (``kseg.tune.search.best_cell``).

        The default cell (when in the grid) ranks 0; the others follow from the most conservative down:
        lexicographic on (threshold, min_size, min_area, max_prob_gate, aux_gate, top_threshold), larger
        first, top_threshold None (no triplet rule) below any value.
        """
        keys = [np.array([-1.0 if v is None else float(v) for v in values]) for values in self.axes]
        flat = [k.ravel() for k in np.meshgrid(*keys, indexing="ij")]  # C order, like the flat cell index
        order = np.lexsort([-k for k in reversed(flat)])  # lexsort's primary key is the last one
        default = self.default_cell()
        if default is not None:
            order = np.concatenate([[default], order[order != default]])
        rank = np.empty(self.size, dtype=np.int64)
        rank[order] = np.arange(self.size)
        return rank

    def cells(self) -> list[ClassParams]:
        """Every cell's ``ClassParams`` in flat (C) order."""
        return [ClassParams(**dict(zip(AXES, combo, strict=True))) for combo in itertools.product(*self.axes)]

    def to_dict(self) -> dict[str, list]:
        """Values per axis under the ``tune`` config names (thresholds, min_sizes, ...)."""
        return {name: list(values) for name, values in zip(CONFIG_NAMES, self.axes, strict=True)}
