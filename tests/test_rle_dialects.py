"""RLE dialects (kseg.data.rle.RleDialect): hand-computed strings, round trips against the reference codecs
written from the published rules (tests/rle_reference.py), dialect-specific errors, instance unions, and the
spec's dialect flowing through the train csv reader, the submission writer and ``kseg validate``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kseg.competition import CompetitionSpec, CsvSpec, read_train_labels
from kseg.data.rle import KAGGLE, RleDialect, decode, encode, encode_batch, rle_area, union, validate_rle
from kseg.typed import ConfigError, from_dict

from rle_reference import ref_decode, ref_encode

ROW = RleDialect(order="row")
SIIM = RleDialect(starts="relative", empty="-1")
ZERO = RleDialect(base=0, empty="1 0")
DIALECTS = {
    "kaggle": KAGGLE,
    "row": ROW,
    "siim": SIIM,
    "zero": ZERO,
    "row-relative": RleDialect(order="row", starts="relative"),
}


def facts(d: RleDialect) -> dict:
    return {"order": d.order, "starts": d.starts, "base": d.base, "empty": d.empty}


# 3x4 probe, asymmetric under transpose and flips:  0 1 0 1 / 1 0 0 1 / 1 0 1 0
PROBE = np.array([[0, 1, 0, 1], [1, 0, 0, 1], [1, 0, 1, 0]], dtype=np.uint8)


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        (KAGGLE, "2 3 9 3"),  # column-major pixel numbers 1 4 7 10 / 2 5 8 11 / 3 6 9 12
        (ROW, "2 1 4 2 8 2 11 1"),  # row-major pixel numbers 1 2 3 4 / 5 6 7 8 / 9 10 11 12
        (SIIM, "1 3 4 3"),  # 0-based first run at 1, next after a gap of 4 background pixels
        (ZERO, "1 3 8 3"),  # column-major, 0-based
    ],
)
def test_hand_computed_probe(dialect: RleDialect, expected: str) -> None:
    assert encode(PROBE, dialect) == expected
    np.testing.assert_array_equal(decode(expected, (3, 4), dialect), PROBE)
    assert rle_area(expected, dialect) == PROBE.sum()


@pytest.mark.parametrize("name", DIALECTS)
def test_round_trips_match_the_reference(name: str) -> None:
    dialect, rng = DIALECTS[name], np.random.default_rng(7)
    for trial in range(60):
        h, w = int(rng.integers(1, 12)), int(rng.integers(1, 12))
        mask = (rng.random((h, w)) < rng.choice([0.0, 0.1, 0.5, 0.9, 1.0])).astype(np.uint8)
        rle = encode(mask, dialect)
        assert rle == ref_encode(mask, **facts(dialect)), (name, trial)
        np.testing.assert_array_equal(decode(rle, (h, w), dialect), mask)
        np.testing.assert_array_equal(ref_decode(rle, (h, w), **facts(dialect)), mask)
    masks = (rng.random((5, 7, 9)) < 0.4).astype(np.uint8)
    masks[2] = 0
    assert encode_batch(masks, dialect) == [encode(m, dialect) for m in masks]


def test_empty_tokens() -> None:
    empty = np.zeros((4, 5), np.uint8)
    assert encode(empty, SIIM) == "-1" and encode(empty, ZERO) == "1 0" and encode(empty, KAGGLE) == ""
    assert encode_batch(np.zeros((2, 4, 5), np.uint8), SIIM) == ["-1", "-1"]
    for dialect, token in ((SIIM, "-1"), (ZERO, "1 0")):
        for cell in (token, f" {token} ", "", float("nan"), None):
            assert not decode(cell, (4, 5), dialect).any()
        assert validate_rle(token, (4, 5), dialect) == []
        assert "writes an empty mask as" in validate_rle("", (4, 5), dialect)[0]  # submissions must use the token
    for token in ("-1", "1 0", "-"):  # another dialect's empty token is named as such
        assert f"{token!r} is how other competitions write an empty mask" in validate_rle(token, (4, 5))[0]
    assert "is how other competitions write an empty mask; this one writes '-1'" in validate_rle("1 0", (4, 5), SIIM)[0]


def test_relative_string_in_an_absolute_dialect_names_the_dialect() -> None:
    flat = np.zeros(12, np.uint8)
    flat[[5, 6, 9]] = 1
    siim = encode(flat.reshape(4, 3).T, SIIM)  # column-major pixels 5-6 and 9 (0-based)
    assert siim == "5 2 2 1"  # ... whose relative second start (a gap of 2) falls inside the first run
    with pytest.raises(ValueError, match=r"(?s)starts before run 0.*relative starts\?.*column-major, absolute"):
        decode(siim, (3, 4))
    assert "relative starts?" in validate_rle("1 3 2 1", (3, 4))[0]  # overlapping: named the same way
    problems = validate_rle("5 2 3 1", (3, 4))
    assert "sorted ascending" in problems[0] and "relative starts?" in problems[0] and "RLE dialect" in problems[0]


def test_absolute_string_in_a_relative_dialect_names_the_dialect() -> None:
    with pytest.raises(ValueError, match=r"(?s)past the image end.*absolute starts\?.*relative starts"):
        decode("2 3 9 3", (3, 4), SIIM)  # absolute column-major: 9 is read as a gap of 9 after pixel 4


def test_runs_longer_than_a_line_are_legal_in_both_orders() -> None:
    full_rows = np.zeros((3, 4), np.uint8)
    full_rows[1:] = 1
    assert encode(full_rows, ROW) == "5 8"  # one run over two whole rows
    np.testing.assert_array_equal(decode("5 8", (3, 4), ROW), full_rows)
    assert encode(full_rows, KAGGLE) == "2 2 5 2 8 2 11 2"


def test_dialect_rejects_bad_settings() -> None:
    with pytest.raises(ConfigError, match="base"):
        RleDialect(base=2)
    with pytest.raises(ConfigError, match="non-empty mask"):
        RleDialect(empty="1 5")
    with pytest.raises(ConfigError, match="order"):
        from_dict(RleDialect, {"order": "diagonal"}, prefix="competition.rle")
    with pytest.raises(ConfigError, match="unknown|not a field|emptyy"):
        from_dict(RleDialect, {"emptyy": "-1"}, prefix="competition.rle")


def test_union_of_instances() -> None:
    a, b = np.zeros((5, 6), np.uint8), np.zeros((5, 6), np.uint8)
    a[0:2, 0:2], b[1:4, 1], b[4, 5] = 1, 1, 1  # overlapping and touching objects
    for dialect in DIALECTS.values():
        rle = union([encode(a, dialect), encode(b, dialect), dialect.empty, ""], dialect)
        np.testing.assert_array_equal(decode(rle, (5, 6), dialect), a | b)
        assert rle == encode(a | b, dialect)
    assert union(["", "-1"], SIIM) == "-1"
    with pytest.raises(ValueError, match="instance 1"):
        union(["1 2", "x"], KAGGLE)


# --------------------------------------------------------------------------- through the spec


def _spec(**kw) -> CompetitionSpec:
    return CompetitionSpec(
        name="t",
        classes=("a",),
        train_csv="train.csv",
        image_ext=".png",
        ids_have_ext=True,
        train=CsvSpec(
            format="single", id_column="ImageId", rle_column=" EncodedPixels", instances=kw.pop("instances", False)
        ),
        **kw,
    )


def test_train_csv_read_in_the_spec_dialect(tmp_path: Path) -> None:
    """SIIM-style csv: leading-space column, -1 for empty, relative starts, one row per instance."""
    a, b = np.zeros((3, 4), np.uint8), np.zeros((3, 4), np.uint8)
    a[0, 1], b[2, 2:] = 1, 1
    rows = [
        ("x.png", ref_encode(a, starts="relative", empty="-1")),
        ("x.png", ref_encode(b, starts="relative")),
        ("y.png", "-1"),
    ]
    pd.DataFrame(rows, columns=["ImageId", " EncodedPixels"]).to_csv(tmp_path / "train.csv", index=False)
    spec = _spec(rle=SIIM, instances=True)
    table = read_train_labels(spec, tmp_path).set_index("image_id")
    np.testing.assert_array_equal(decode(table.loc["x.png", "a"], (3, 4), SIIM), a | b)
    assert table.loc["y.png", "a"] == ""  # the empty token becomes the table's empty cell
    with pytest.raises(ValueError, match=r"row 3: duplicate mask.*instances: true"):
        read_train_labels(_spec(rle=SIIM), tmp_path)


def test_train_csv_string_illegal_in_the_dialect_names_row_and_dialect(tmp_path: Path) -> None:
    pd.DataFrame([("x.png", "2 3 9 3"), ("y.png", "5 2 3 1")], columns=["ImageId", " EncodedPixels"]).to_csv(
        tmp_path / "train.csv", index=False
    )
    with pytest.raises(
        ValueError, match=r"train.csv: row 3: image 'y.png' class a: .*sorted.*RLE dialect column-major"
    ):
        read_train_labels(_spec(), tmp_path)
    pd.DataFrame([("x.png", "-1")], columns=["ImageId", " EncodedPixels"]).to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(
        ValueError, match=r"row 2: .*'-1' is how other competitions write an empty mask.*this one writes ''"
    ):
        read_train_labels(_spec(), tmp_path)  # -1 is SIIM's empty token, not this dialect's
