"""Item 8: ``kseg validate`` catches every way Kaggle rejects a file, each message naming the row.

tests/test_validate.py covers the long (Severstal) and image_label (Clouds) formats, one test per rule:
::test_wrong_header, ::test_header_missing_a_column_stops, ::test_missing_id, ::test_extra_id,
::test_duplicate, ::test_bad_rle_names_the_row (odd count, non-integer, start < 1, length < 1, unsorted,
overlapping, past the image), ::test_unreadable_csv, ::test_missing_file. Here the same rules for the
one-row-per-image ``single`` format (TGS, Carvana), and the files that are broken as a whole.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kseg.config import config_from_dict
from kseg.submission.validate import validate_submission

SAMPLE = "id,rle_mask\na,1 1\nb,1 1\nc,1 1\n"
GOOD = "id,rle_mask\na,1 2\nb,\nc,5 3 12 2\n"  # 4x5 images: 20 pixels


@pytest.fixture()
def tgs(tmp_path: Path):
    (tmp_path / "sample_submission.csv").write_text(SAMPLE)
    spec = {
        "name": "tgs-like",
        "classes": ["salt"],
        "mode": "binary",
        "image_size": [4, 5],
        "submission_size": [4, 5],
        "train": {"format": "single", "id_column": "id", "rle_column": "rle_mask"},
        "submission": {"format": "single", "id_column": "id", "rle_column": "rle_mask"},
    }
    return config_from_dict({"competition": spec, "name": "tgs-like", "data": {"root": str(tmp_path)}})


def _problems(cfg, tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "sub.csv"
    path.write_text(text)
    return validate_submission(path, cfg).problems


def test_good_single_format_file(tgs, tmp_path):
    assert _problems(tgs, tmp_path, GOOD) == []
    assert _problems(tgs, tmp_path, GOOD.replace("\n", "\r\n")) == []  # Windows line ends are fine


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            GOOD.replace("id,rle_mask", "id,EncodedPixels"),
            "row 1 (header): expected 'id,rle_mask', got 'id,EncodedPixels'",
        ),
        (GOOD.replace("id,rle_mask", "ID,rle_mask"), "row 1 (header): expected 'id,rle_mask', got 'ID,rle_mask'"),
        (GOOD.replace("b,\n", ""), "missing row for image 'b' (row 3 of sample_submission.csv)"),
        (GOOD + "d,1 1\n", "row 5: image 'd' is not in the sample submission"),
        (GOOD + "a,3 1\n", "row 5: duplicate of row 2 (image 'a')"),
        (GOOD.replace("a,1 2", "a,1 2 3"), "row 2 (image 'a'): RLE has an odd number of integers"),
        (GOOD.replace("a,1 2", "a,1 two"), "row 2 (image 'a'): RLE has non-integer tokens"),
        (GOOD.replace("a,1 2", "a,nan"), "row 2 (image 'a'): RLE has non-integer tokens"),
        (GOOD.replace("a,1 2", "a,0 2"), "row 2 (image 'a'): run 0 (start=0, length=2): start < 1"),
        (GOOD.replace("a,1 2", "a,3 0"), "row 2 (image 'a'): run 0 (start=3, length=0): length < 1"),
        (GOOD.replace("c,5 3 12 2", "c,12 2 5 3"), "row 4 (image 'c'): "),
        (GOOD.replace("c,5 3 12 2", "c,5 8 12 2"), "row 4 (image 'c'): "),
        (
            GOOD.replace("c,5 3 12 2", "c,19 3"),
            "row 4 (image 'c'): run 0 (start=19, length=3): ends at pixel 21, past the image end 20",
        ),
        (GOOD.replace("a,1 2", "a,99999999999999999999999 1"), "row 2 (image 'a'): RLE contains an integer too large"),
    ],
    ids=[
        "header",
        "header-case",
        "missing",
        "extra",
        "duplicate",
        "odd",
        "non-integer",
        "nan",
        "start0",
        "length0",
        "unsorted",
        "overlap",
        "past-end",
        "overflow",
    ],
)
def test_each_rejection_names_the_row(tgs, tmp_path, text, expected):
    problems = _problems(tgs, tmp_path, text)
    assert problems and problems[0].startswith(expected), problems


def test_unsorted_and_overlap_say_so(tgs, tmp_path):
    assert "sorted" in _problems(tgs, tmp_path, GOOD.replace("c,5 3 12 2", "c,12 2 5 3"))[0]
    assert "overlaps" in _problems(tgs, tmp_path, GOOD.replace("c,5 3 12 2", "c,5 8 12 2"))[0]


def test_files_broken_as_a_whole(tgs, tmp_path):
    assert _problems(tgs, tmp_path, "") == [f"{tmp_path / 'sub.csv'}: the file is empty (no header)"]
    header_only = _problems(tgs, tmp_path, "id,rle_mask\n")
    assert header_only == [
        f"missing row for image '{i}' (row {r} of sample_submission.csv)" for i, r in (("a", 2), ("b", 3), ("c", 4))
    ]
    ragged = _problems(tgs, tmp_path, GOOD + "d,1 1,extra\n")
    assert len(ragged) == 1 and "line 5" in ragged[0]
