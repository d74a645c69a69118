"""kseg.train.loop: the validation metric is the spec's registry metric (reduce_val; volumes: volume_score)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kseg.competition import CompetitionSpec, CsvSpec
from kseg.config import load_config
from kseg.data.volumes import VolumeSpec
from kseg.metrics import build_metric, mask_stats, score
from kseg.train.dist import DistInfo
from kseg.train.loop import ValOutput, reduce_val, volume_score

REPO = Path(__file__).resolve().parents[1]


def test_volume_score_matches_score_masks_in_any_row_order() -> None:
    rng = np.random.default_rng(2)
    pred, true = rng.random((6, 2, 5, 7)) < 0.3, rng.random((6, 2, 5, 7)) < 0.3
    case = np.array(["b", "a", "b", "a", "b", "a"], dtype=object)
    sl = np.array([3, 10, 1, 2, 2, 9])
    metric = build_metric("dice_hausdorff")
    packed = [(np.packbits(p), np.packbits(t), p.shape) for p, t in zip(pred, true, strict=True)]
    expected = metric.score_masks(pred, true, case, sl)
    assert volume_score(metric, (case, sl), packed) == pytest.approx(expected, abs=1e-12)
    packed[0] = (np.packbits(pred[0, :, :4]), np.packbits(true[0, :, :4]), (2, 4, 7))
    with pytest.raises(ValueError, match="case b: its slices have different sizes"):
        volume_score(metric, (case, sl), packed)


UW = r"^(?P<case>case\d+_day\d+)_slice_(?P<slice>\d+)$"
IDS = ["case1_day0_slice_1", "case1_day0_slice_2", "case2_day0_slice_10", "case2_day0_slice_9"]


def _output(pred: np.ndarray, true: np.ndarray, positions: list[int], volume: bool) -> ValOutput:
    """One rank's ValOutput of two batches, rows in ``positions`` order."""
    res = ValOutput(loss_sum=2.0, count=4)
    for sl in (slice(0, 2), slice(2, 4)):
        inter, pa, ta = mask_stats(pred[sl], true[sl])
        res.inter.append(inter)
        res.pred_area.append(pa)
        res.true_area.append(ta)
        if volume:
            res.volume += [(np.packbits(p), np.packbits(t), p.shape) for p, t in zip(pred[sl], true[sl], strict=True)]
    res.positions = positions
    return res


@pytest.mark.parametrize("metric", ["dice", "iou_ap", "global_dice", "dice_hausdorff"])
def test_reduce_val_scores_with_the_spec_metric(metric: str) -> None:
    rng = np.random.default_rng(4)
    pred, true = rng.random((4, 2, 6, 5)) < 0.3, rng.random((4, 2, 6, 5)) < 0.3
    long = CsvSpec(format="long")
    spec = CompetitionSpec(
        name="uw",
        classes=("a", "b"),
        mode="multilabel",
        metric=metric,
        train=long,
        submission=long,
        volume=VolumeSpec(UW),
    )
    positions = [3, 0, 2, 1]  # the rows of pred are val images 3, 0, 2, 1
    loss, got = reduce_val(_output(pred, true, positions, metric == "dice_hausdorff"), IDS, spec, DistInfo())
    assert loss == 0.5
    if metric in ("dice", "iou_ap"):  # the historic mean over image x class, bit for bit
        assert got == score(pred, true, metric)
    elif metric == "global_dice":
        assert got == pytest.approx(build_metric(metric).score_masks(pred, true))
    else:
        case, sl = spec.volume_keys([IDS[i] for i in positions])
        assert got == pytest.approx(build_metric(metric).score_masks(pred, true, case, sl), abs=1e-12)


def _row(on: range, width: int = 10) -> np.ndarray:
    """bool [1, 1, width]: one class, one row, the pixels in ``on`` set."""
    out = np.zeros((1, 1, width), dtype=bool)
    out[0, 0, list(on)] = True
    return out


def test_reduce_val_scores_tiled_validation_per_slide() -> None:
    """HuBMAP (tile.size > 0): validation rows are tiles; the metric is the leaderboard's mean over slides of the
    whole-slide dice. Slide A: 3 empty/empty tiles + one of dice 2*1/(5+5) = 0.2; slide B: one tile of dice
    2*4/(5+5) = 0.8. Mean over tiles 0.8, mean over slides 0.5."""
    spec = load_config(REPO / "configs/hubmap/unet-tiles.yaml").competition
    empty = _row(range(0))
    pred = np.stack([empty, _row(range(0, 5)), empty, _row(range(0, 5)), empty])  # [5 tiles, C=1, 1, 10]
    true = np.stack([empty, _row(range(4, 9)), empty, _row(range(1, 6)), empty])
    ids = ["afa5e8098@0_0", "afa5e8098@0_1024", "afa5e8098@1024_0", "1e2425f28@0_0", "afa5e8098@1024_1024"]
    positions = [4, 1, 3, 0, 2]  # loader order: row r of the booked masks is val tile ids[positions[r]]
    res = ValOutput(loss_sum=1.0, count=5)
    res.add_masks(pred[positions[:3]], true[positions[:3]], keep=False)
    res.add_masks(pred[positions[3:]], true[positions[3:]], keep=False)
    res.positions = positions
    assert reduce_val(res, ids, spec, DistInfo())[1] == pytest.approx(0.8)  # untiled: every row is an image
    assert reduce_val(res, ids, spec, DistInfo(), tiled=True)[1] == pytest.approx(0.5)
