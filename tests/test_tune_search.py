"""kseg.tune.search: per-fold score sums, the optimistic and the cross-validated choice, ties."""

from __future__ import annotations

import numpy as np
import pytest

from kseg.metrics import dice_from_stats
from kseg.tune.grid import Grid
from kseg.tune.search import GroupedStats, ScoreTable, best_cell


def test_score_table_cross_validation_hand_computed():
    """2 folds x 2 cells: both cells tie overall (first wins), but each fold prefers the other one."""
    t = ScoreTable(num_classes=1, num_folds=2, num_cells=2)
    t.add_images(np.array([0, 0, 1, 1]))
    # per-image scores [cells, n]: fold0 images 0,1 ; fold1 images 2,3
    scores = np.array([[1.0, 1.0, 0.25, 0.25], [0.5, 0.5, 0.75, 0.75]])
    t.add(0, np.array([0, 0, 1, 1]), scores, default=np.array([0.5, 0.5, 0.5, 0.5]))
    ch = t.choose(0)
    assert ch.cell == 0 and ch.score_tuned == pytest.approx(2.5 / 4)
    # held fold0: chosen on fold1 -> cell 1 -> 0.5 + 0.5; held fold1: chosen on fold0 -> cell 0 -> 0.25 + 0.25
    assert ch.cv_cells == (1, 0)
    assert ch.score_cv == pytest.approx(1.5 / 4)
    assert ch.score_default == pytest.approx(0.5)


def test_score_table_ties_prefer_default_then_conservative_hand_built():
    """6 cells of thresholds (0.3, 0.5, 0.7) x min sizes (0, 10), 2 folds x 2 images, with ties."""
    grid = Grid(thresholds=(0.3, 0.5, 0.7), min_sizes=(0, 10))
    t = ScoreTable(num_classes=1, num_folds=2, num_cells=grid.size, tie_rank=grid.tie_rank())
    folds = np.array([0, 0, 1, 1])
    t.add_images(folds)
    scores = np.array(
        [
            [0.5, 0.5, 1.0, 1.0],  # 0 (0.3, 0):  fold0 1.0, fold1 2.0, total 3.0
            [0.5, 0.5, 1.0, 1.0],  # 1 (0.3, 10): the same
            [1.0, 1.0, 0.5, 0.5],  # 2 (0.5, 0) default: fold0 2.0, fold1 1.0, total 3.0
            [0.25, 0.25, 0.25, 0.25],  # 3 (0.5, 10): total 1.0
            [1.0, 1.0, 0.0, 0.0],  # 4 (0.7, 0):  fold0 2.0, fold1 0.0
            [1.0, 1.0, 0.0, 0.0],  # 5 (0.7, 10): the same
        ]
    )
    t.add(0, folds, scores, default=scores[2])
    ch = t.choose(0)
    assert ch.cell == 2  # cells 0, 1, 2 tie at 3.0: the default wins (grid order would pick cell 0)
    # held fold0, chosen on fold1: cells 0 and 1 tie at 2.0 -> the larger min size, cell 1 (fold0 score 1.0)
    # held fold1, chosen on fold0: cells 2, 4, 5 tie at 2.0 -> the default, cell 2 (fold1 score 1.0)
    assert ch.cv_cells == (1, 2)
    assert ch.score_cv == pytest.approx(2.0 / 4) and ch.score_tuned == pytest.approx(3.0 / 4)
    sums = np.array([0.0, 0.0, 0.0, 2.0, 2.0, 1.0])  # (0.5, 10) ties (0.7, 0): the higher threshold wins
    assert best_cell(sums, 4, grid.tie_rank()) == 4 and best_cell(sums, 4) == 3
    near = np.array([0.0, 2.0, 2.0 - 1e-12, 0.0, 0.0, 0.0])  # within the tolerance: still a tie -> default
    assert best_cell(near, 4, grid.tie_rank()) == 2
    apart = np.array([0.0, 2.0, 2.0 - 1e-6, 0.0, 0.0, 0.0])  # beyond it: the better score wins
    assert best_cell(apart, 4, grid.tie_rank()) == 1
    with pytest.raises(ValueError, match="tie_rank"):
        ScoreTable(1, 2, 6, tie_rank=np.arange(5))


def test_stats_table_pools_statistics_hand_computed():
    """global dice, 2 folds x 2 cells; stats (inter, pred, true) per image, chosen and scored on summed pixels."""
    from kseg.metrics import build_metric
    from kseg.tune.search import StatsTable

    metric = build_metric("global_dice")
    t = StatsTable(1, 2, 2, 3, metric.finalize)
    folds = np.array([0, 0, 1])
    t.add_images(folds)
    stats = np.array(
        [
            [[3, 4, 6], [0, 0, 0], [1, 1, 1]],  # cell 0: fold0 2*3/10 = 0.6, fold1 2*1/2 = 1.0, all 2*4/12 = 0.667
            [[5, 10, 6], [0, 2, 0], [0, 0, 1]],  # cell 1: fold0 2*5/18 = 0.556, fold1 0.0, all 10/19 = 0.526
        ],
        dtype=np.float64,
    )
    t.add(0, folds, stats, default=stats[1])
    ch = t.choose(0)
    assert ch.cell == 0 and ch.score_tuned == pytest.approx(8 / 12)
    assert ch.score_default == pytest.approx(10 / 19)
    # held fold0 chosen on fold1 -> cell 0; held fold1 chosen on fold0 -> cell 0 (0.6 > 0.556): all cell 0
    assert ch.cv_cells == (0, 0) and ch.score_cv == pytest.approx(8 / 12)
    np.testing.assert_allclose(t.cell_means(0), [8 / 12, 10 / 19])
    np.testing.assert_allclose(t.fold_means(0), [[0.6, 10 / 18], [1.0, 0.0]])


def test_grouped_stats_score_each_slide_once_hand_computed():
    """Slide A (fold 0): 4 tiles, 3 empty/empty; slide B (fold 1): 1 tile; 2 cells, booked in two chunks.

    Cell 0: A's tile (inter, pred, true) = (1, 5, 5) -> A 0.2, B (4, 5, 5) -> 0.8; cell 1: A (4, 5, 5) -> 0.8,
    B (0, 0, 5) -> 0. Per slide: cell 0 (0.2 + 0.8) / 2 = 0.5, cell 1 0.4 (per tile: 0.84 and 0.76).
    CV: held A -> chosen on B: cell 0 -> A 0.2; held B -> chosen on A: cell 1 -> B 0; (0.2 + 0) / 2 = 0.1."""
    g = GroupedStats(num_classes=1, num_folds=2, num_cells=2, group_fold=np.array([0, 1]))
    # chunk 1: tiles A (empty), B, A (empty); [cells, n] statistics, default (inter, pred) [n] at 0.5
    inter, pred = np.array([[0, 4, 0], [0, 0, 0]]), np.array([[0, 5, 0], [0, 0, 0]])
    g.add(0, np.array([0, 1, 0]), inter, pred, np.array([0, 5, 0]), (np.zeros(3, int), np.zeros(3, int)))
    # chunk 2: tiles A (empty), A (the one with glomeruli)
    inter, pred = np.array([[0, 1], [0, 4]]), np.array([[0, 5], [0, 5]])
    g.add(0, np.array([0, 0]), inter, pred, np.array([0, 5]), (np.array([0, 2]), np.array([0, 5])))
    np.testing.assert_array_equal(g.sums[0, :, 0], [[1, 5, 5], [4, 5, 5]])  # slide A per cell
    np.testing.assert_array_equal(g.sums[0, :, 1], [[4, 5, 5], [0, 0, 5]])  # slide B per cell
    table = g.table(dice_from_stats, None)
    assert table.counts.tolist() == [1, 1]  # one scored image (a slide) per fold
    ch = table.choose(0)
    assert ch.cell == 0 and ch.score_tuned == pytest.approx(0.5)
    assert ch.cv_cells == (0, 1) and ch.score_cv == pytest.approx(0.1)
    assert ch.score_default == pytest.approx((2 * 2 / 10 + 0.0) / 2)  # A (2, 5, 5) -> 0.4; B (0, 0, 5) -> 0
    with pytest.raises(ValueError, match=r"fold positions in 0\.\.1"):
        GroupedStats(1, 2, 2, np.array([0, 2]))
