"""kseg.tune.grid: the grid's axes, cell order, the untuned default cell and the tie ranking."""

from __future__ import annotations

import numpy as np
import pytest

from kseg.config import TuneConfig
from kseg.postprocess import ClassParams
from kseg.tune.grid import Grid


def test_tie_rank_default_first_then_most_conservative():
    g = Grid(thresholds=(0.3, 0.5, 0.7), min_sizes=(0, 10))  # cells (0.3,0) (0.3,10) (0.5,0) (0.5,10) (0.7,0) (0.7,10)
    assert g.default_cell() == 2
    # default (0.5, 0) first, then threshold descending, min size descending within a threshold
    np.testing.assert_array_equal(g.tie_rank(), [5, 4, 0, 3, 2, 1])
    # gates and the triplet axis: a gate of 0 (off) and no triplet rule (None) are the least strict values
    g = Grid(thresholds=(0.5,), max_prob_gates=(0.0, 0.9), top_thresholds=(None, 0.8))  # (g, top) in C order
    np.testing.assert_array_equal(g.tie_rank(), [0, 3, 2, 1])
    g = Grid(thresholds=(0.4, 0.6), min_sizes=(0, 5))
    assert g.default_cell() is None
    np.testing.assert_array_equal(g.tie_rank(), [3, 2, 1, 0])  # (0.6, 5) most conservative


def test_grid_from_config_order_and_errors():
    g = Grid.from_config(TuneConfig(thresholds=(0.4, 0.6), min_sizes=(0, 8), triplet=True, top_thresholds=(0.9,)))
    assert g.shape == (2, 2, 1, 1, 1, 2) and g.size == 8
    # C order: the last axis (top threshold, None first) varies fastest
    assert g.params(0) == ClassParams(threshold=0.4)
    assert g.params(1) == ClassParams(threshold=0.4, top_threshold=0.9)
    assert g.params(2) == ClassParams(threshold=0.4, min_size=8)
    assert g.params(7) == ClassParams(threshold=0.6, min_size=8, top_threshold=0.9)
    assert g.cells()[5] == g.params(5)
    assert Grid.from_config(TuneConfig(triplet=False, top_thresholds=(0.9,))).top_thresholds == (None,)
    for kwargs, words in [
        ({"thresholds": ()}, "tune.thresholds: no values"),
        ({"thresholds": (0.5, 0.5)}, "tune.thresholds: duplicate"),
        ({"thresholds": (0.5,), "min_sizes": (-1,)}, "tune.min_sizes: min_size"),
        ({"thresholds": (1.5,)}, "tune.thresholds: threshold"),
    ]:
        with pytest.raises(ValueError, match=words):
            Grid(**kwargs)
