"""Tests for kseg.metrics with hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from kseg.metrics import (
    IOU_THRESHOLDS,
    METRICS,
    dice_from_stats,
    get_metric,
    iou_ap_from_stats,
    mask_stats,
    per_item_scores,
    score,
    score_from_stats,
    sum_groups,
)


def row_mask(on: range, width: int = 10) -> np.ndarray:
    """[1, width] mask with the pixels in ``on`` set."""
    mask = np.zeros((1, width), np.uint8)
    mask[0, list(on)] = 1
    return mask


EMPTY = row_mask(range(0))
PRED_4 = row_mask(range(0, 4))  # pixels 0-3
TRUE_6 = row_mask(range(1, 7))  # pixels 1-6: intersection 3, union 7


def test_thresholds_are_exact() -> None:
    assert IOU_THRESHOLDS.tolist() == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]


def test_mask_stats_shapes_and_values() -> None:
    pred = np.stack([PRED_4, EMPTY, TRUE_6])[:, None]  # [3, 1, 1, 10]
    true = np.stack([TRUE_6, EMPTY, EMPTY])[:, None]
    inter, pred_area, true_area = mask_stats(pred, true)
    for array in (inter, pred_area, true_area):
        assert array.dtype == np.int64 and array.shape == (3, 1)
    assert inter.ravel().tolist() == [3, 0, 0]
    assert pred_area.ravel().tolist() == [4, 0, 6]
    assert true_area.ravel().tolist() == [6, 0, 0]
    single = mask_stats(PRED_4.astype(bool), TRUE_6 * 255)
    assert [int(s) for s in single] == [3, 4, 6]


@pytest.mark.parametrize("metric", ["dice", "iou_ap"])
def test_empty_cases(metric: str) -> None:
    assert score(EMPTY, EMPTY, metric) == 1.0
    assert score(EMPTY, TRUE_6, metric) == 0.0
    assert score(PRED_4, EMPTY, metric) == 0.0
    assert score(TRUE_6, TRUE_6, metric) == 1.0


def test_partial_overlap() -> None:
    # pred 4 px, true 6 px, intersection 3: dice 2*3/10, IoU 3/7 = 0.43 < every threshold
    assert score(PRED_4, TRUE_6, "dice") == pytest.approx(0.6)
    assert score(PRED_4, TRUE_6, "iou_ap") == 0.0


@pytest.mark.parametrize(
    ("inter", "pred_area", "true_area", "expected"),
    [
        (4, 4, 5, 0.6),  # IoU 0.8 exactly: 0.50..0.75 pass, 0.8 is not > 0.8
        (3, 3, 4, 0.5),  # IoU 0.75 exactly: 0.50..0.70 pass
        (1, 1, 2, 0.0),  # IoU 0.5 exactly: nothing passes
        (19, 19, 20, 0.9),  # IoU 0.95 exactly: all but 0.95 pass
        (24, 24, 25, 1.0),  # IoU 0.96
        (51, 51, 100, 0.1),  # IoU 0.51: only 0.50 passes
        (0, 3, 4, 0.0),  # disjoint
    ],
)
def test_iou_ap_threshold_boundaries(inter: int, pred_area: int, true_area: int, expected: float) -> None:
    assert iou_ap_from_stats(inter, pred_area, true_area) == pytest.approx(expected)


def test_iou_ap_from_masks_at_iou_08() -> None:
    pred = row_mask(range(0, 4))
    true = row_mask(range(0, 5))  # inter 4, union 5
    assert score(pred, true, "iou_ap") == pytest.approx(0.6)
    assert score(pred, true, "dice") == pytest.approx(8 / 9)


def test_dice_from_stats_vectorized() -> None:
    out = dice_from_stats(np.array([0, 3, 2]), np.array([0, 4, 2]), np.array([0, 6, 3]))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [1.0, 0.6, 0.8])


def test_multiclass_mean_over_images_and_classes() -> None:
    pred = np.stack([np.stack([EMPTY, PRED_4]), np.stack([EMPTY, TRUE_6])])  # [2, 2, 1, 10]
    true = np.stack([np.stack([EMPTY, TRUE_6]), np.stack([TRUE_6, TRUE_6])])
    dice = per_item_scores(pred, true, "dice")
    assert dice.shape == (2, 2)
    np.testing.assert_allclose(dice, [[1.0, 0.6], [0.0, 1.0]])
    assert score(pred, true, "dice") == pytest.approx(0.65)
    np.testing.assert_allclose(per_item_scores(pred, true, "iou_ap"), [[1, 0], [0, 1]])
    assert score(pred, true, "iou_ap") == pytest.approx(0.5)
    assert score_from_stats(*mask_stats(pred, true), "dice") == pytest.approx(0.65)


def test_registry() -> None:
    assert set(METRICS) == {"dice", "iou_ap"}
    assert get_metric("dice") is dice_from_stats
    assert get_metric("iou_ap") is iou_ap_from_stats
    with pytest.raises(ValueError, match="unknown metric 'f1'.*dice, iou_ap"):
        get_metric("f1")
    with pytest.raises(ValueError, match="valid metrics"):
        score(EMPTY, EMPTY, "IoU")
    with pytest.raises(TypeError):
        METRICS["x"] = dice_from_stats  # type: ignore[index]


def test_input_errors() -> None:
    with pytest.raises(ValueError, match=r"pred shape \(1, 10\) != true shape \(1, 9\)"):
        mask_stats(PRED_4, PRED_4[:, :9])
    with pytest.raises(ValueError, match="threshold probabilities"):
        mask_stats(PRED_4 * 0.7, TRUE_6)
    with pytest.raises(ValueError, match="at least 2 dims"):
        mask_stats(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="inconsistent"):
        dice_from_stats(5, 4, 6)
    with pytest.raises(ValueError, match="zero items"):
        score(np.zeros((0, 3, 3)), np.zeros((0, 3, 3)), "dice")
    # 0/1 floats are fine
    assert score(PRED_4.astype(np.float32), TRUE_6.astype(np.float64), "dice") == pytest.approx(0.6)


def test_sum_groups_sums_each_groups_rows_exactly() -> None:
    values = np.array([[1, 10], [2, 20], [3, 30], [4, 40]], dtype=np.int64)  # [n=4, 2]
    group = np.array([2, 0, 2, 0])
    got = sum_groups(values, group, 4)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, [[6, 60], [0, 0], [4, 40], [0, 0]])  # group 1 and 3 have no rows
    np.testing.assert_array_equal(sum_groups(values.T, group, axis=1), [[6, 0, 4], [60, 0, 40]])  # G = max + 1
    big = np.array([2**62, 1], dtype=np.int64)  # int64 sums stay exact (no float round trip)
    assert sum_groups(big, np.array([0, 0]))[0] == 2**62 + 1
    with pytest.raises(ValueError, match=r"\(3,\) group labels for \(4, 2\) values"):
        sum_groups(values, np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="group label 2 >= n_groups 2"):
        sum_groups(values, group, 2)
    with pytest.raises(ValueError, match="integers >= 0"):
        sum_groups(values, np.array([0, -1, 0, 0]))
