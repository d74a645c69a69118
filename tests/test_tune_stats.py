"""kseg.tune.stats: per-image sums of every grid cell, checked against sums computed by hand.

tests/test_tune.py compares the whole search with ``apply_postprocess`` on random images; here two 4x4
images are small enough to count every pixel and component on paper.
"""

from __future__ import annotations

import numpy as np
import pytest

from kseg.tune.grid import AXES, Grid
from kseg.tune.stats import above_counts, boxed_grid_stats, class_grid_stats

# image 0: a 2x2 blob (q=200) in the top left corner, a lone pixel (q=200) in the bottom right one and
# q=100 pixels below threshold 0.5; truth = the blob + the pixel right of it (5 pixels).
# image 1: one pixel q=255, no truth.
Q = np.zeros((2, 4, 4), np.uint8)
Q[0, :2, :2] = 200
Q[0, 3, 3] = 200
Q[0, 2, :2] = 100
Q[1, 1, 1] = 255
TRUTH = np.zeros((2, 4, 4), bool)
TRUTH[0, :2, :2] = True
TRUTH[0, 0, 2] = True
AUX = np.array([200, 50], np.uint8)

# levels (foreground is q > level): 0.5 -> 127, 0.7 -> 178, 0.9 -> 229, 0.95 -> 242
GRID = Grid(
    thresholds=(0.5, 0.9),
    min_sizes=(0, 3),
    min_areas=(0, 4),
    max_prob_gates=(0.0, 0.95),
    aux_gates=(0.0, 0.5),
    top_thresholds=(None, 0.7),
)


def _cell(st, **params) -> tuple[list[int], list[int]]:
    """(pred_area, inter) per image of one cell, axes given by value (the rest at their first value)."""
    axes = dict(zip(AXES, GRID.axes, strict=True))
    idx = tuple(values.index(params.get(axis, values[0])) for axis, values in axes.items())
    return st.pred_area[idx].tolist(), st.inter[idx].tolist()


def test_class_grid_stats_hand_computed():
    st = class_grid_stats(Q, TRUTH, GRID, AUX)
    assert st.pred_area.shape == st.inter.shape == (2, 2, 2, 2, 2, 2, 2)
    assert st.true_area.tolist() == [5, 0]
    assert (st.default_pred_area.tolist(), st.default_inter.tolist()) == ([5, 1], [4, 0])  # threshold 0.5 alone
    # threshold 0.5: image 0 keeps blob (4, all true) + lone pixel (1, not true); image 1 its pixel
    assert _cell(st) == ([5, 1], [4, 0])
    assert _cell(st, min_size=3) == ([4, 0], [4, 0])  # the two 1-pixel components go
    assert _cell(st, min_area=4) == ([5, 0], [4, 0])  # image 1's 1 pixel < 4: emptied
    assert _cell(st, min_size=3, min_area=4) == ([4, 0], [4, 0])
    # threshold 0.9: only image 1's q=255 pixel; a 1-pixel component does not survive min_size 3
    assert _cell(st, threshold=0.9) == ([0, 1], [0, 0])
    assert _cell(st, threshold=0.9, min_size=3) == ([0, 0], [0, 0])
    # max-prob gate 0.95: image 0 (max 200 <= 242) is emptied, image 1 (255) kept
    assert _cell(st, max_prob_gate=0.95) == ([0, 1], [0, 0])
    # aux gate 0.5: aux 200 > 127 keeps image 0, aux 50 empties image 1
    assert _cell(st, aux_gate=0.5) == ([5, 0], [4, 0])
    # triplet top 0.7: keep when at least max(min_area, 1) pixels are above 178 (image 0: 5, image 1: 1)
    assert _cell(st, top_threshold=0.7) == ([5, 1], [4, 0])
    assert _cell(st, top_threshold=0.7, min_area=4) == ([5, 0], [4, 0])
    assert _cell(st, top_threshold=0.7, threshold=0.9) == ([0, 1], [0, 0])
    assert _cell(st, min_size=3, min_area=4, aux_gate=0.5, max_prob_gate=0.95) == ([0, 0], [0, 0])


def test_above_counts_is_a_reverse_cumulative_histogram():
    hist = np.zeros((1, 256), np.int64)
    hist[0, [0, 100, 200, 255]] = [3, 2, 4, 1]
    above = above_counts(hist)
    assert above.shape == (1, 257)
    # column L + 1 = number of values > L
    assert [int(above[0, level + 1]) for level in (-1, 0, 99, 100, 199, 200, 254, 255)] == [10, 7, 7, 5, 5, 1, 1, 0]


def test_class_grid_stats_rejects_bad_inputs():
    with pytest.raises(ValueError, match="q must be uint8"):
        class_grid_stats(Q.astype(np.float32), TRUTH, GRID, AUX)
    with pytest.raises(ValueError, match="truth shape"):
        class_grid_stats(Q, TRUTH[:, :2], GRID, AUX)
    with pytest.raises(ValueError, match="aux gates > 0 but no aux-head"):
        class_grid_stats(Q, TRUTH, GRID)


def test_boxed_grid_stats_are_each_tiles_crop_alone() -> None:
    """Tiles cropped to their own boxes (kseg.tiling.owned_boxes): every image's statistics equal
    ``class_grid_stats`` of that image's crop alone, whichever images share a box."""
    rng = np.random.default_rng(5)
    n, h, w = 6, 12, 14
    q = (rng.random((n, h, w)) ** 2 * 255).astype(np.uint8)
    truth = rng.random((n, h, w)) < 0.3
    aux = rng.integers(0, 256, n).astype(np.uint8)
    boxes = np.array([[0, 12, 0, 14], [3, 12, 0, 14], [0, 12, 5, 14], [0, 12, 0, 14], [3, 12, 5, 14], [0, 7, 0, 9]])
    got = boxed_grid_stats(q, truth, GRID, aux, boxes)
    for i, (top, bottom, left, right) in enumerate(boxes):
        alone = class_grid_stats(
            q[i : i + 1, top:bottom, left:right], truth[i : i + 1, top:bottom, left:right], GRID, aux[i : i + 1]
        )
        np.testing.assert_array_equal(got.inter[..., i], alone.inter[..., 0])
        np.testing.assert_array_equal(got.pred_area[..., i], alone.pred_area[..., 0])
        assert got.true_area[i] == truth[i, top:bottom, left:right].sum() == alone.true_area[0]
        assert (got.default_inter[i], got.default_pred_area[i]) == (alone.default_inter[0], alone.default_pred_area[0])
