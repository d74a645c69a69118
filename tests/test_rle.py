"""Tests for kseg.data.rle: hand-computed strings, validation, round trips, real data."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from kseg.data.images import read_mask
from kseg.data.rle import decode, encode, encode_batch, rle_area, validate_rle

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# ---------------------------------------------------------------- references
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from rle_speed import kernel_decode as classic_decode  # noqa: E402  the common Kaggle kernel versions
from rle_speed import kernel_encode as classic_encode  # noqa: E402


def blob_mask(rng: np.random.Generator, h: int, w: int, sigma: float, fg: float) -> np.ndarray:
    noise = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), sigma)
    return (noise > np.quantile(noise, 1.0 - fg)).astype(np.uint8)


# ---------------------------------------------------------------- hand-computed
@pytest.mark.parametrize(
    ("pixel", "expected"),
    [((0, 0), "1 1"), ((2, 0), "3 1"), ((0, 1), "4 1"), ((0, 3), "10 1"), ((2, 3), "12 1")],
)
def test_single_pixel_3x4(pixel: tuple[int, int], expected: str) -> None:
    mask = np.zeros((3, 4), dtype=np.uint8)
    mask[pixel] = 1
    assert encode(mask) == expected
    np.testing.assert_array_equal(decode(expected, (3, 4)), mask)


def test_runs_crossing_columns() -> None:
    # Column-major pixel numbers of a 3x4 image:  1 4 7 10 / 2 5 8 11 / 3 6 9 12
    mask = np.array([[0, 1, 0, 1], [1, 0, 0, 1], [1, 0, 1, 0]], dtype=np.uint8)
    assert encode(mask) == "2 3 9 3"
    np.testing.assert_array_equal(decode("2 3 9 3", (3, 4)), mask)


def test_empty_and_full() -> None:
    assert encode(np.zeros((3, 4), np.uint8)) == ""
    assert encode(np.ones((3, 4), np.uint8)) == "1 12"
    np.testing.assert_array_equal(decode("1 12", (3, 4)), np.ones((3, 4), np.uint8))
    for empty in ("", "   ", None, float("nan"), np.nan):
        out = decode(empty, (3, 4))
        assert out.shape == (3, 4) and out.dtype == np.uint8 and not out.any()
        assert validate_rle(empty, (3, 4)) == []


def test_row_and_column_vectors() -> None:
    row = np.array([[1, 1, 0, 1, 0]], dtype=np.uint8)
    assert encode(row) == "1 2 4 1"
    np.testing.assert_array_equal(decode("1 2 4 1", (1, 5)), row)
    col = np.array([[0], [1], [1], [1], [0]], dtype=np.uint8)
    assert encode(col) == "2 3"
    np.testing.assert_array_equal(decode("2 3", (5, 1)), col)


def test_encode_any_dtype_and_layout() -> None:
    mask = np.array([[0, 1, 0, 1], [1, 0, 0, 1], [1, 0, 1, 0]])
    for variant in (
        mask.astype(bool),
        mask * 255,
        mask.astype(np.float32) * 0.5,
        np.asfortranarray(mask),
        np.pad(mask, ((0, 0), (0, 4)))[:, :4],  # non-contiguous view
        np.repeat(mask, 2, axis=1)[:, ::2],  # strided view
    ):
        assert encode(variant) == "2 3 9 3"


def test_decode_output_layout() -> None:
    out = decode("2 3 9 3", (3, 4))
    assert out.dtype == np.uint8 and out.shape == (3, 4) and out.flags.c_contiguous
    assert set(np.unique(out).tolist()) == {0, 1}


def test_touching_runs_decode_like_one_run() -> None:
    np.testing.assert_array_equal(decode("1 2 3 1", (3, 4)), decode("1 3", (3, 4)))
    assert validate_rle("1 2 3 1", (3, 4)) == []


def test_whitespace_is_tolerated() -> None:
    np.testing.assert_array_equal(decode(" 2 3\t9  3\n", (3, 4)), decode("2 3 9 3", (3, 4)))


def test_encode_rejects_wrong_ndim() -> None:
    with pytest.raises(ValueError, match=r"2-D array, got shape \(2, 3, 4\)"):
        encode(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"3-D array, got shape \(3, 4\)"):
        encode_batch(np.zeros((3, 4)))


def test_encode_batch_matches_encode() -> None:
    rng = np.random.default_rng(7)
    masks = (rng.random((6, 5, 7)) > 0.6).astype(np.uint8)
    masks[2] = 0
    masks[3] = 1
    masks[4, 0, 0] = 1  # starts at pixel 1, right after the previous item's last pixel
    masks[3, -1, -1] = 1
    expected = [encode(m) for m in masks]
    assert expected[2] == "" and expected[3] == "1 35"
    assert encode_batch(masks) == expected
    assert encode_batch(np.zeros((0, 5, 7))) == []


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("rle", "fragments"),
    [
        ("1 2 3", ["odd number of integers (3)", "(shape (3, 4))"]),
        ("0 1", ["run 0 (start=0, length=1)", "start < 1"]),
        ("-3 2", ["run 0 (start=-3, length=2)", "start < 1"]),
        ("1 0", ["'1 0' is how other competitions write an empty mask", "this one writes ''"]),  # SenNet's token
        ("2 1 4 -1", ["run 1 (start=4, length=-1)", "length < 1"]),
        ("5 1 1 1", ["run 1 (start=1, length=1) starts before run 0 (start=5, length=1)", "sorted ascending"]),
        ("1 3 2 1", ["run 1 (start=2, length=1) overlaps run 0 (start=1, length=3)"]),
        ("4 1 4 2", ["run 1 (start=4, length=2) overlaps run 0 (start=4, length=1)"]),
        ("12 2", ["run 0 (start=12, length=2)", "ends at pixel 13", "image end 12", "(shape (3, 4))"]),
        ("13 1", ["run 0 (start=13, length=1)", "ends at pixel 13"]),
        ("1 a", ["non-integer", "token 1 'a'"]),
        ("1 2 3.5 1", ["non-integer", "token 2 '3.5'"]),
        ("+1 2", ["non-integer", "token 0 '+1'"]),
        ("1 2 \u0663 1", ["non-integer", "token 2"]),  # Arabic-Indic digit three
        ("1,2", ["non-integer", "token 0 '1,2'"]),
        ("99999999999999999999 1", ["too large"]),
    ],
)
def test_invalid_rle_rejected(rle: str, fragments: list[str]) -> None:
    problems = validate_rle(rle, (3, 4))
    assert len(problems) == 1
    for fragment in fragments:
        assert fragment in problems[0]
    with pytest.raises(ValueError) as info:
        decode(rle, (3, 4))
    assert str(info.value) == problems[0]


def test_valid_edge_runs_accepted() -> None:
    assert validate_rle("12 1", (3, 4)) == []  # last pixel
    assert validate_rle("1 1 12 1", (3, 4)) == []


def test_several_problems_reported_once_each() -> None:
    # run 0 starts at 0; run 1 ends at 14 > 12; run 2 has length 0 and starts before run 1.
    problems = validate_rle("0 1 13 2 4 0", (3, 4))
    assert len(problems) == 4
    assert "start < 1" in problems[0]
    assert "length < 1" in problems[1] and "run 2" in problems[1]
    assert "past the image end" in problems[2] and "run 1" in problems[2]
    assert "sorted ascending" in problems[3]
    with pytest.raises(ValueError, match="start < 1"):
        decode("0 1 13 2 4 0", (3, 4))


def test_counts_further_offenders_and_lists_bad_tokens() -> None:
    (problem,) = validate_rle("1 0 3 0 5 0", (3, 4))
    assert "run 0 (start=1, length=0)" in problem and "(and 2 more)" in problem
    (problem,) = validate_rle("x 1 y 2", (3, 4))
    assert "token 0 'x'" in problem and "token 2 'y'" in problem


def test_non_string_rle_rejected() -> None:
    (problem,) = validate_rle(5.0, (3, 4))
    assert "must be a str" in problem and "5.0" in problem
    with pytest.raises(ValueError, match="must be a str"):
        decode(b"1 2", (3, 4))  # type: ignore[arg-type]


def test_bad_shape_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        decode("1 1", (0, 4))
    with pytest.raises(ValueError, match="shape"):
        decode("1 1", (3,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        validate_rle("1 1", (3.0, 4))  # type: ignore[arg-type]


def test_rle_area() -> None:
    assert rle_area("1 2 5 3") == 5
    assert rle_area("2 3 9 3") == 6
    assert rle_area(float("nan")) == 0
    assert rle_area(None) == 0
    assert rle_area("") == 0
    with pytest.raises(ValueError, match="odd number"):
        rle_area("1 2 3")
    with pytest.raises(ValueError, match="overlaps"):
        rle_area("1 5 3 1")


# ---------------------------------------------------------------- round trips
def test_random_round_trips_match_reference() -> None:
    rng = np.random.default_rng(2024)
    shapes = [(1, 1), (1, 17), (23, 1), (1, 300), (300, 1)]
    shapes += [tuple(int(s) for s in rng.integers(1, 90, size=2)) for _ in range(195)]
    for i, (h, w) in enumerate(shapes):
        kind = i % 4
        if kind == 0:
            mask = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        elif kind == 1 and min(h, w) > 3:
            mask = blob_mask(rng, h, w, sigma=2.0, fg=float(rng.uniform(0.05, 0.95)))
        elif kind == 2:
            mask = np.zeros((h, w), np.uint8)
            mask[rng.integers(0, h), rng.integers(0, w)] = 1
        else:
            mask = (rng.random((h, w)) < 0.97).astype(np.uint8)
        rle = encode(mask)
        assert rle == classic_encode(mask), (h, w)
        decoded = decode(rle, (h, w))
        np.testing.assert_array_equal(decoded, mask, err_msg=f"shape {(h, w)}")
        np.testing.assert_array_equal(decoded, classic_decode(rle, (h, w)))
        assert rle_area(rle) == int(mask.sum())
        assert validate_rle(rle, (h, w)) == []


def test_large_values_round_trip() -> None:
    mask = np.zeros((1400, 2100), np.uint8)  # runs with 7-digit starts
    mask[-1, -1] = 1
    mask[:5, 1000] = 1
    rle = encode(mask)
    assert rle == f"{1000 * 1400 + 1} 5 {1400 * 2100} 1"
    np.testing.assert_array_equal(decode(rle, mask.shape), mask)


# ---------------------------------------------------------------- real data
def _csv(name: str):
    pd = pytest.importorskip("pandas")
    path = DATA / name
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return pd.read_csv(path)


def test_isbi_round_trip_exact() -> None:
    df = _csv("isbi2012/train.csv")
    assert len(df) == 30
    fractions = []
    for rle in df["EncodedPixels"]:
        mask = decode(rle, (512, 512))
        assert encode(mask) == rle
        fractions.append(mask.mean())
    assert 0.15 <= float(np.mean(fractions)) <= 0.30


def test_tgs_round_trip_exact_and_matches_png_masks() -> None:
    df = _csv("tgs-salt/train.csv")
    assert len(df) == 3000
    empty = df["rle_mask"].isna()
    assert 0.35 <= float(empty.mean()) <= 0.43
    for image_id, rle in zip(df["id"], df["rle_mask"], strict=True):
        mask = decode(rle, (101, 101))
        expected = "" if isinstance(rle, float) and math.isnan(rle) else rle
        assert encode(mask) == expected, image_id
    # The PNG masks are stored row-major; equality proves the Fortran pixel order.
    checked = 0
    for image_id, rle in zip(df["id"][~empty][:25], df["rle_mask"][~empty][:25], strict=True):
        png = DATA / "tgs-salt" / "train" / "masks" / f"{image_id}.png"
        truth = read_mask(png)
        decoded = decode(rle, (101, 101))
        assert truth.any()
        np.testing.assert_array_equal(decoded, truth, err_msg=str(image_id))
        assert not np.array_equal(decoded, truth.T) or np.array_equal(truth, truth.T)
        checked += 1
    assert checked == 25
