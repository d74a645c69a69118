"""kseg.tune.volume: per-threshold min-size volumes equal kseg.postprocess.remove_small slice by slice."""

from __future__ import annotations

import numpy as np

from kseg.postprocess import binarize, quantize, remove_small
from kseg.tune.volume import min_size_masks


def test_min_size_masks_match_remove_small_per_slice() -> None:
    rng = np.random.default_rng(8)
    q = quantize(rng.random((4, 16, 18)) ** 3)
    q[2] = 0  # an empty slice
    sizes = (0, 1, 3, 8)
    for t in (0.3, 0.6):
        got = min_size_masks(q, t, sizes)
        for s, mask in zip(sizes, got, strict=True):
            expected = np.stack([remove_small(binarize(q[i], t), s) for i in range(4)])
            np.testing.assert_array_equal(mask, expected)
        assert got[2].sum() < got[0].sum()  # the min sizes remove something
