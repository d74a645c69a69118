"""Tests for kseg.data.rle_runs: every painting path (boxes, bands, chunks) against the reference decoder."""

from __future__ import annotations

import numpy as np
import pytest

from kseg.data import rle_runs
from kseg.data.rle import RleDialect, decode, validate_rle
from kseg.data.rle_runs import paint_runs, runs_are_valid

from rle_reference import ref_decode, ref_encode


def _runs(rle: str) -> tuple[np.ndarray, np.ndarray]:
    values = np.array(rle.split(), dtype=np.int64)
    return values[0::2] - 1, values[1::2]


def _boxes(shape: tuple[int, int], boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    for y0, y1, x0, x1 in boxes:
        mask[y0:y1, x0:x1] = 1
    return mask


@pytest.mark.parametrize("order", ["column", "row"])
def test_boxes_are_painted_box_by_box(order: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two separate boxes (Severstal-like defects): the box path paints them; the band path must never run.
    mask = _boxes((6, 9), [(1, 4, 2, 5), (3, 6, 7, 8)])
    monkeypatch.setattr(rle_runs, "_chunks", lambda *a: pytest.fail("band path used for boxes"))
    first, lengths = _runs(ref_encode(mask, order=order))
    out = paint_runs(first, lengths, mask.shape, order)
    assert out.flags.c_contiguous and out.dtype == np.uint8
    np.testing.assert_array_equal(out, mask)


@pytest.mark.parametrize("order", ["column", "row"])
def test_shapes_that_are_not_boxes(order: str) -> None:
    # A run crossing a line end (column order: the 3x2 block wraps from column 0 into column 1) and an L shape.
    mask = _boxes((5, 7), [(2, 5, 0, 1), (0, 2, 1, 2), (0, 1, 4, 7), (0, 3, 4, 5)])
    first, lengths = _runs(ref_encode(mask, order=order))
    np.testing.assert_array_equal(paint_runs(first, lengths, mask.shape, order), mask)


@pytest.mark.parametrize("order", ["column", "row"])
def test_bands_and_chunks(order: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Small chunks force long bands to be cut; a chunk edge inside a run must not lose either half.
    monkeypatch.setattr(rle_runs, "_CHUNK_BYTES", 64)
    rng = np.random.default_rng(3)
    for shape in [(40, 50), (37, 120), (128, 9)]:
        mask = (rng.random(shape) < 0.4).astype(np.uint8)
        mask[:, 30:] = 0  # an empty stretch splits the bands
        first, lengths = _runs(ref_encode(mask, order=order))
        np.testing.assert_array_equal(paint_runs(first, lengths, shape, order), mask)


def test_scattered_runs_beyond_the_band_limit() -> None:
    # One pixel every 20th column: more than _MAX_BANDS bands, painted as one chunked band.
    mask = np.zeros((16, 1000), dtype=np.uint8)
    mask[5, ::20] = 1
    first, lengths = _runs(ref_encode(mask))
    assert first.size > rle_runs._MAX_BANDS
    np.testing.assert_array_equal(paint_runs(first, lengths, mask.shape, "column"), mask)


def test_decode_matches_reference_on_random_masks() -> None:
    rng = np.random.default_rng(0)
    for trial in range(60):
        shape = (int(rng.integers(1, 60)), int(rng.integers(1, 60)))
        mask = (rng.random(shape) < rng.random()).astype(np.uint8)
        for order in ("column", "row"):
            rle = ref_encode(mask, order=order)
            got = decode(rle, shape, RleDialect(order=order))
            np.testing.assert_array_equal(got, ref_decode(rle, shape, order=order), err_msg=f"{trial} {order}")


@pytest.mark.parametrize(
    ("first", "lengths", "size", "valid"),
    [
        ([0, 5], [5, 3], 8, True),  # touching runs, ending exactly at the image end
        ([0, 5], [5, 3], 7, False),  # past the end
        ([0, 4], [5, 3], 8, False),  # overlap
        ([5, 0], [1, 1], 8, False),  # unsorted
        ([-1], [1], 8, False),  # start below the base
        ([2], [0], 8, False),  # empty run
        ([0, 2**62], [1, 2**62], None, True),  # no image size: huge values, no overflow
        ([0], [2**62], 8, False),
    ],
)
def test_runs_are_valid(first: list[int], lengths: list[int], size: int | None, valid: bool) -> None:
    assert runs_are_valid(np.array(first, np.int64), np.array(lengths, np.int64), size) is valid


def test_fast_check_keeps_strict_messages() -> None:
    # The fast check only accepts; every rejection still gets the detailed message naming the run.
    assert validate_rle("1 3 3 2", (2, 4)) == [
        "run 1 (start=3, length=2) overlaps run 0 (start=1, length=3) (relative starts? this dialect expects "
        "absolute ones) (shape (2, 4)) [RLE dialect column-major, absolute 1-based starts, empty mask '']"
    ]
    with pytest.raises(ValueError, match=r"run 0 \(start=7, length=3\): ends at pixel 9, past the image end 8"):
        decode("7 3", (2, 4))


def test_boxes_sharing_lines_are_still_boxes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two defects one above the other over the same 40 columns: their runs alternate column by column (80 runs,
    # 79 breaks in scan order), and an overlapping third makes a union; sorted by span they are 4 boxes.
    mask = _boxes((64, 200), [(2, 10, 20, 60), (30, 50, 20, 60), (40, 60, 50, 90)])
    monkeypatch.setattr(rle_runs, "_chunks", lambda *a: pytest.fail("band path used for boxes"))
    first, lengths = _runs(ref_encode(mask))
    np.testing.assert_array_equal(paint_runs(first, lengths, mask.shape, "column"), mask)


@pytest.mark.parametrize(
    "rle",
    [
        "1 2 6 2 7 2",  # the third box starts inside the second (1-pixel overlap)
        "1 2 9 0",  # a box of length 0
        "0 2 5 2",  # a box starting at pixel 0 of a 1-based dialect
        "9 2 1 2",  # boxes out of order
        "17 2 21 2",  # one box (two columns) whose second run ends past the image end
        "1 99999999999999999999",  # saturates in np.fromstring, then fails the bounds check
    ],
)
def test_box_checks_defer_to_the_detailed_messages(rle: str) -> None:
    # Box runs are checked at their heads only: every rejection must still raise the detailed message.
    problems = validate_rle(rle, (4, 5))
    assert problems
    with pytest.raises(ValueError) as info:
        decode(rle, (4, 5))
    assert str(info.value) == problems[0]


@pytest.mark.parametrize("order", ["column", "row"])
def test_decode_paints_boxes_without_the_general_path(order: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Severstal-like defects (touching, side by side and at the image end) decode through the box list alone.
    mask = _boxes((16, 40), [(0, 15, 0, 3), (2, 5, 3, 9), (9, 14, 3, 9), (12, 16, 36, 39)])
    monkeypatch.setattr(rle_runs, "_paint", lambda *a: pytest.fail("general path used for boxes"))
    rle = ref_encode(mask, order=order)
    out = decode(rle, mask.shape, RleDialect(order=order))
    assert out.flags.c_contiguous and out.dtype == np.uint8
    np.testing.assert_array_equal(out, mask)
