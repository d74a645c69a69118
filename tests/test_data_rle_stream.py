"""Streaming RLE: strips in == one-shot string out (both pixel orders), windows decoded from runs."""

from __future__ import annotations

import numpy as np
import pytest

from kseg.data.rle import RleDialect
from kseg.data.rle_stream import StripEncoder, decode_window, mask_runs

from rle_reference import ref_decode, ref_encode

ROW, COLUMN = RleDialect(order="row"), RleDialect(order="column")


def _strips(mask: np.ndarray, cuts: list[int], dialect: RleDialect) -> str:
    enc = StripEncoder(mask.shape, dialect)
    for a, b in zip([0, *cuts], [*cuts, mask.shape[0]], strict=True):
        enc.add(mask[a:b])
    return enc.finish()


def test_column_runs_crossing_strips_by_hand() -> None:
    # 4x2 mask, column 0 all on, column 1 on in rows 0-1: one column-major run 1..6 (1-based) spans
    # both strips of 2 rows and the column boundary
    mask = np.array([[1, 1], [1, 1], [1, 0], [1, 0]], dtype=np.uint8)
    assert _strips(mask, [2], COLUMN) == "1 6"
    assert _strips(mask, [1, 3], ROW) == "1 5 7 1"


@pytest.mark.parametrize("dialect", [ROW, COLUMN, RleDialect(order="column", starts="relative", base=0, empty="-1")])
@pytest.mark.parametrize("seed", range(6))
def test_strips_match_reference(dialect: RleDialect, seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 40, size=2)
    mask = (rng.random((h, w)) < rng.choice([0.0, 0.1, 0.6, 1.0])).astype(np.uint8)
    cuts = sorted(set(rng.integers(0, h + 1, size=rng.integers(0, 5)).tolist()))
    want = ref_encode(mask, dialect.order, dialect.starts, dialect.base, dialect.empty)
    assert _strips(mask, cuts, dialect) == want
    assert _strips(mask, cuts, dialect) == dialect.encode(mask)


def test_strip_errors_name_the_shape() -> None:
    enc = StripEncoder((4, 3))
    with pytest.raises(ValueError, match=r"does not fit a mask of shape \(4, 3\)"):
        enc.add(np.zeros((2, 5)))
    enc.add(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="only 2 of 4 rows"):
        enc.finish()


@pytest.mark.parametrize("order", ["row", "column"])
def test_decode_window_matches_reference_crop(order: str) -> None:
    rng = np.random.default_rng(3)
    mask = (rng.random((37, 23)) < 0.4).astype(np.uint8)
    rle = ref_encode(mask, order)
    runs = mask_runs(rle, mask.shape, RleDialect(order=order))
    assert runs.area == int(mask.sum())
    full = ref_decode(rle, mask.shape, order)
    for y0, x0, h, w in [(0, 0, 37, 23), (5, 3, 10, 7), (-4, -2, 9, 6), (30, 20, 12, 12), (40, 0, 3, 3)]:
        want = np.zeros((h, w), np.uint8)
        ya, xa = max(y0, 0), max(x0, 0)
        crop = full[ya : y0 + h, xa : x0 + w]
        want[ya - y0 : ya - y0 + crop.shape[0], xa - x0 : xa - x0 + crop.shape[1]] = crop
        np.testing.assert_array_equal(decode_window(runs, y0, x0, h, w), want)


def test_runs_pixel_positions() -> None:
    # column order, H=4: pixel 5 (0-based) is row 1 of column 1
    runs = mask_runs("6 1", (4, 3), COLUMN)
    y, x = runs.pixel(runs.first)
    assert (int(y[0]), int(x[0])) == (1, 1)
