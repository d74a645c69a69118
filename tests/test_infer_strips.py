"""Strip-wise post-processing + RLE == whole-map post-processing + one-shot RLE (components crossing strips)."""

from __future__ import annotations

import numpy as np
import pytest

from kseg.data.rle import RleDialect
from kseg.infer.strips import encode_strips, strip_bounds
from kseg.postprocess import ClassParams, apply_postprocess

from rle_reference import ref_encode


def _blobs(rng: np.random.Generator, shape: tuple[int, int], n: int) -> np.ndarray:
    """uint8 [H, W] quantized map: n discs of random radius and height on noise."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    q = rng.integers(0, 90, size=shape).astype(np.float32)
    for _ in range(n):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(1, 9)
        q[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = rng.integers(120, 256)
    return q.astype(np.uint8)


def _run(q: np.ndarray, params: list[ClassParams], order: str, strip: int, exclusive: bool = False):
    dialect = RleDialect(order=order)
    return encode_strips(lambda a, b: q[:, a:b], q.shape[1:], params, dialect, strip=strip, exclusive=exclusive)


def test_strip_bounds() -> None:
    assert strip_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]


def test_component_cut_by_a_strip_boundary_is_measured_whole() -> None:
    q = np.zeros((1, 6, 5), np.uint8)
    q[0, 1:5, 2] = 200  # a 4-pixel bar cut by every strip boundary at strip=2 (and a diagonal step)
    q[0, 5, 3] = 200  # diagonal neighbour: same 8-connected component, 5 pixels
    q[0, 0, 0] = 200  # a lone pixel: removed
    rles, areas = _run(q, [ClassParams(min_size=5)], "column", strip=2)
    assert areas == [5]
    want = np.zeros((6, 5), np.uint8)
    want[1:5, 2] = 1
    want[5, 3] = 1
    assert rles == [ref_encode(want, "column")]


@pytest.mark.parametrize("order", ["row", "column"])
@pytest.mark.parametrize("strip", [1, 3, 7, 64])
@pytest.mark.parametrize(
    "params",
    [
        ClassParams(threshold=0.5),
        ClassParams(threshold=0.45, min_size=20),
        ClassParams(threshold=0.5, min_size=30, min_area=400),
        ClassParams(threshold=0.5, max_prob_gate=0.99),
        ClassParams(threshold=0.4, top_threshold=0.9, min_area=10, min_size=5),
    ],
)
def test_strips_equal_whole_map(order: str, strip: int, params: ClassParams) -> None:
    rng = np.random.default_rng(strip)
    q = _blobs(rng, (41, 33), 12)[None]
    want = apply_postprocess(q, [params])[0]
    rles, areas = _run(q, [params], order, strip)
    assert rles == [ref_encode(want, order)]
    assert areas == [int(want.sum())]


def test_exclusive_classes_per_strip() -> None:
    rng = np.random.default_rng(5)
    q = np.stack([_blobs(rng, (30, 20), 6) for _ in range(3)])
    params = [ClassParams(threshold=0.4, min_size=8)] * 3
    want = apply_postprocess(q, params, exclusive=True)
    rles, _ = _run(q, params, "column", strip=4, exclusive=True)
    assert rles == [ref_encode(m, "column") for m in want]


def test_aux_gate_is_refused() -> None:
    q = np.zeros((1, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="aux_gate"):
        _run(q, [ClassParams(aux_gate=0.5)], "column", strip=2)
