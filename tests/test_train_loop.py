"""kseg.train.loop.volume_score: a volume metric of packed validation masks, grouped by case like score_masks."""

from __future__ import annotations

import numpy as np
import pytest

from kseg.metrics import build_metric
from kseg.train.loop import volume_score


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
