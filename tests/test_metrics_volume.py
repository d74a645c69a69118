"""kseg.metrics.volume and dice_hausdorff: 3D Hausdorff on hand-drawn volumes, case grouping, empty rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import directed_hausdorff

from kseg.competition import CompetitionSpec
from kseg.data.volumes import VolumeSpec
from kseg.metrics import build_metric, case_groups, hausdorff_distance

R3 = math.sqrt(3)


def vol(shape: tuple[int, ...], *voxels: tuple[int, ...]) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    for v in voxels:
        out[v] = True
    return out


def test_hausdorff_by_hand() -> None:
    shape = (2, 4, 5)  # coordinates divided by (2, 4, 5): the unit cube
    far = math.sqrt(0.5**2 + 0.75**2 + 0.8**2) / R3  # (0,0,0) vs (1,3,4)
    assert hausdorff_distance(vol(shape, (0, 0, 0)), vol(shape, (1, 3, 4))) == pytest.approx(far)
    # pred inside true: pred -> true is 0, true -> pred is 1/5 along W: the symmetric distance is the max
    assert hausdorff_distance(vol(shape, (0, 0, 0)), vol(shape, (0, 0, 0), (0, 0, 1))) == pytest.approx(0.2 / R3)
    assert hausdorff_distance(vol(shape, (0, 0, 0), (0, 0, 1)), vol(shape, (0, 0, 0))) == pytest.approx(0.2 / R3)
    # a far voxel of the truth only: one directed distance would say 0
    assert hausdorff_distance(vol(shape, (0, 0, 0)), vol(shape, (0, 0, 0), (1, 3, 4))) == pytest.approx(far)
    assert hausdorff_distance(vol(shape, (1, 2, 3)), vol(shape, (1, 2, 3))) == 0.0
    assert math.isnan(hausdorff_distance(vol(shape), vol(shape)))
    assert hausdorff_distance(vol(shape), vol(shape, (0, 1, 1))) == 1.0
    assert hausdorff_distance(vol(shape, (0, 1, 1)), vol(shape)) == 1.0


def test_hausdorff_is_exact_inside_a_ring() -> None:
    """Prediction = full 7 x 7 square, truth = its border ring: the farthest predicted pixel is the centre,
    3 pixels from the ring (an edge-only distance would give 0: both masks have the same outline)."""
    true = np.zeros((1, 7, 7), dtype=bool)
    true[0, [0, -1], :] = True
    true[0, :, [0, -1]] = True
    pred = np.ones((1, 7, 7), dtype=bool)
    assert hausdorff_distance(pred, true) == pytest.approx((3 / 7) / R3)


def test_hausdorff_matches_scipy_directed_hausdorff_on_random_volumes() -> None:
    rng = np.random.default_rng(5)
    for _ in range(5):
        shape = (int(rng.integers(2, 6)), int(rng.integers(5, 12)), int(rng.integers(5, 12)))
        pred, true = rng.random(shape) < 0.05, rng.random(shape) < 0.08
        pred[0, 0, 0] = true[-1, -1, -1] = True
        a, b = np.argwhere(pred) / np.array(shape), np.argwhere(true) / np.array(shape)
        ref = max(directed_hausdorff(a, b)[0], directed_hausdorff(b, a)[0]) / R3
        assert hausdorff_distance(pred, true) == pytest.approx(ref, abs=1e-12)


def test_case_groups_numeric_slice_order() -> None:
    case = np.array(["b", "a", "b", "a", "b"], dtype=object)
    sl = np.array([10, 2, 9, 1, 100])
    groups = case_groups(case, sl)
    assert [g[0] for g in groups] == ["a", "b"]
    assert groups[0][1].tolist() == [3, 1] and groups[1][1].tolist() == [2, 0, 4]
    with pytest.raises(ValueError, match="slice 2 twice"):
        case_groups(np.array(["a", "a"], dtype=object), np.array([2, 2]))


UW = r"^(?P<case>case\d+_day\d+)_slice_(?P<slice>\d+)$"
IDS = ["case1_day0_slice_1", "case1_day0_slice_10", "case1_day0_slice_2", "case2_day0_slice_1"]


def _uw_masks() -> tuple[np.ndarray, np.ndarray]:
    """[4 slices, 1 class, 4, 5]: case1 truth at slice 1 (0,0), prediction at slice 2 (0,0); the rest empty."""
    pred, true = np.zeros((4, 1, 4, 5), bool), np.zeros((4, 1, 4, 5), bool)
    true[0, 0, 0, 0] = True  # slice 1
    pred[2, 0, 0, 0] = True  # slice 2
    return pred, true


def test_dice_hausdorff_by_hand_both_empty_rules() -> None:
    spec = CompetitionSpec(name="uw", classes=("a",), metric="dice_hausdorff", volume=VolumeSpec(UW))
    case, sl = spec.volume_keys(IDS)
    pred, true = _uw_masks()
    # case1 volume in numeric order (1, 2, 10): truth z=0, prediction z=1 of 3 -> distance (1/3) / sqrt 3
    # (string order 1, 10, 2 would put the prediction at z=2: 2/3). case2: both empty.
    hd1 = 1 - (1 / 3) / R3
    # dice items: slice1 pred empty (0), slice2 true empty (0), slice10 and case2 both empty
    skip = build_metric("dice_hausdorff")
    assert skip.score_masks(pred, true, case, sl) == pytest.approx(0.4 * 0.0 + 0.6 * hd1)
    ones = build_metric("dice_hausdorff", {"empty": "one"})
    assert ones.score_masks(pred, true, case, sl) == pytest.approx(0.4 * 0.5 + 0.6 * (hd1 + 1) / 2)
    both = build_metric("dice_hausdorff", {"dice_weight": 1.0})
    assert both.score_masks(pred, true, case, sl) == 0.0
    nothing = np.zeros_like(pred)
    assert skip.score_masks(nothing, nothing, case, sl) == 1.0  # no item to score: perfect
    assert skip.score_masks(nothing, true, case, sl) == pytest.approx(0.0)  # one empty: distance 1, dice 0
    with pytest.raises(ValueError, match="needs its case and slice index"):
        skip.score_masks(pred, true)
