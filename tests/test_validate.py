"""kseg.submission.validate: one test per rejection type, each asserting the row is named."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from kseg.cli import main
from kseg.config import config_from_dict
from kseg.submission.validate import validate_submission

# Severstal-like long format, 2 test images x 2 classes, masks encoded at 4 x 5 (20 pixels).
SAMPLE = "ImageId,EncodedPixels,ClassId\na.jpg,1 1,1\na.jpg,1 1,2\nb.jpg,1 1,1\nb.jpg,1 1,2\n"
GOOD = "ImageId,EncodedPixels,ClassId\na.jpg,1 3,1\na.jpg,,2\nb.jpg,5 2 10 4,1\nb.jpg,20 1,2\n"


def _cfg(root: Path, **competition):
    spec = {
        "name": "tiny",
        "classes": ["c1", "c2"],
        "class_labels": ["1", "2"],
        "mode": "multilabel",
        "image_ext": ".jpg",
        "ids_have_ext": True,
        "image_size": [4, 5],
        "submission_size": [4, 5],
        "train": {"format": "long"},
        "submission": {"format": "long"},
    }
    spec.update(competition)
    return config_from_dict({"competition": spec, "name": "tiny", "data": {"root": str(root)}})


@pytest.fixture()
def tiny(tmp_path: Path):
    (tmp_path / "sample_submission.csv").write_text(SAMPLE)
    return _cfg(tmp_path)


def _check(cfg, tmp_path: Path, text: str):
    path = tmp_path / "sub.csv"
    path.write_text(text)
    return validate_submission(path, cfg)


def _bad_row(text: str, row: int, rle: str) -> str:
    """GOOD with the RLE of file row ``row`` (header = row 1) replaced."""
    lines = text.splitlines()
    image, _, cls = lines[row - 1].split(",")
    lines[row - 1] = f"{image},{rle},{cls}"
    return "\n".join(lines) + "\n"


def test_valid_submission_and_summary(tiny, tmp_path):
    report = _check(tiny, tmp_path, GOOD)
    assert report.ok, report.problems
    assert report.rows == 4
    c1, c2 = report.classes
    # c1: areas 3 and 2+4=6 -> mean 4.5, no empty; c2: one empty, one of area 1
    assert (c1.rows, c1.empty, c1.mean_area) == (2, 0, 4.5)
    assert (c2.rows, c2.empty, c2.mean_area) == (2, 1, 1.0)
    assert c2.empty_share == 0.5
    assert "c2" in report.summary() and "50.0%" in report.summary()


def test_rows_in_another_order_are_fine(tiny, tmp_path):
    lines = GOOD.splitlines()
    report = _check(tiny, tmp_path, "\n".join([lines[0]] + lines[:0:-1]) + "\n")
    assert report.ok, report.problems


def test_wrong_header(tiny, tmp_path):
    text = "\n".join(line + ",x" for line in GOOD.splitlines()).replace(",x", ",Notes", 1) + "\n"
    report = _check(tiny, tmp_path, text)
    assert report.problems == [
        "row 1 (header): expected 'ImageId,EncodedPixels,ClassId', got 'ImageId,EncodedPixels,ClassId,Notes'"
    ]
    swapped = _check(tiny, tmp_path, GOOD.replace("ImageId,EncodedPixels,ClassId", "ImageId,ClassId,EncodedPixels"))
    assert swapped.problems[0].startswith("row 1 (header)")


def test_header_missing_a_column_stops(tiny, tmp_path):
    report = _check(tiny, tmp_path, "ImageId,Pixels,ClassId\na.jpg,1 3,1\n")
    assert any("missing column 'EncodedPixels'" in p for p in report.problems)


def test_missing_id(tiny, tmp_path):
    text = "\n".join(line for line in GOOD.splitlines() if not line.startswith("b.jpg,20")) + "\n"
    report = _check(tiny, tmp_path, text)
    assert report.problems == ["missing row for image 'b.jpg' class 2 (row 5 of sample_submission.csv)"]


def test_extra_id(tiny, tmp_path):
    report = _check(tiny, tmp_path, GOOD + "c.jpg,1 1,1\n")
    assert report.problems == ["row 6: image 'c.jpg' class 1 is not in the sample submission"]


def test_duplicate(tiny, tmp_path):
    report = _check(tiny, tmp_path, GOOD + "a.jpg,2 2,2\n")
    assert report.problems == ["row 6: duplicate of row 3 (image 'a.jpg' class 2)"]


@pytest.mark.parametrize(
    ("rle", "words"),
    [
        ("1 2 5", "odd number of integers"),
        ("1 2 x 3", "non-integer"),
        ("1.5 2", "non-integer"),
        ("0 2", "start < 1"),
        ("3 0", "length < 1"),
        ("8 2 1 2", "sorted"),
        ("1 4 3 2", "overlaps"),
        ("18 4", "past the image end 20"),
    ],
)
def test_bad_rle_names_the_row(tiny, tmp_path, rle, words):
    report = _check(tiny, tmp_path, _bad_row(GOOD, 4, rle))
    assert len(report.problems) == 1, report.problems
    assert report.problems[0].startswith("row 4 (image 'b.jpg' class 1): ")
    assert words in report.problems[0]
    # the invalid row is left out of the summary, the others still count
    assert report.classes[0].rows == 1


def test_every_problem_is_listed(tiny, tmp_path):
    text = _bad_row(_bad_row(GOOD, 2, "0 1"), 5, "19 5") + "a.jpg,1 1,1\n"
    report = _check(tiny, tmp_path, text)
    rows = sorted(p.split(" ")[1] for p in report.problems)
    assert rows == ["2", "5", "6:"]


def test_unreadable_csv(tiny, tmp_path):
    report = _check(tiny, tmp_path, GOOD + "b.jpg,1 1,2,extra,fields\n")
    assert len(report.problems) == 1 and "line 6" in report.problems[0]


def test_missing_file(tiny, tmp_path):
    report = validate_submission(tmp_path / "nope.csv", tiny)
    assert not report.ok and "file not found" in report.problems[0]


def test_image_label_format_at_own_image_size(tmp_path):
    """Clouds-like ids '<file>_<label>', submission size None -> each test image's own size."""
    (tmp_path / "test_images").mkdir()
    cv2.imwrite(str(tmp_path / "test_images" / "x.jpg"), np.zeros((3, 4, 3), np.uint8))  # 12 px
    cv2.imwrite(str(tmp_path / "test_images" / "y.jpg"), np.zeros((5, 4, 3), np.uint8))  # 20 px
    (tmp_path / "sample_submission.csv").write_text(
        "Image_Label,EncodedPixels\nx.jpg_Fish,1 1\nx.jpg_Sugar,1 1\ny.jpg_Fish,1 1\ny.jpg_Sugar,1 1\n"
    )
    fmt = {"format": "image_label", "id_column": "Image_Label"}
    cfg = _cfg(
        tmp_path,
        classes=["Fish", "Sugar"],
        class_labels=["Fish", "Sugar"],
        image_size=None,
        submission_size=None,
        train=fmt,
        submission=fmt,
    )
    text = "Image_Label,EncodedPixels\nx.jpg_Fish,11 2\nx.jpg_Sugar,\ny.jpg_Fish,11 2\ny.jpg_Sugar,19 3\n"
    report = _check(cfg, tmp_path, text)  # x.jpg (12 px): 11 2 fits; y.jpg (20 px): 19 3 runs past
    assert len(report.problems) == 1, report.problems
    assert report.problems[0].startswith("row 5 (image 'y.jpg' class Sugar)")
    assert "past the image end 20" in report.problems[0]
    report = _check(cfg, tmp_path, text.replace("x.jpg_Fish,11 2", "x.jpg_Fish,11 3"))
    assert any(
        p.startswith("row 2 (image 'x.jpg' class Fish)") and "past the image end 12" in p for p in report.problems
    )
    report = _check(cfg, tmp_path, text.replace("19 3", "19 2"))
    assert report.ok, report.problems
    # a bad class label in an id names the row
    report = _check(cfg, tmp_path, text.replace("y.jpg_Fish", "y.jpg_Gravel"))
    assert any("row 4" in p and "Gravel" in p for p in report.problems)


def test_cli_exit_codes(tiny, tmp_path, capsys):
    cfg_path = tmp_path / "tiny.yaml"
    import yaml

    from kseg.config import config_to_dict

    cfg_path.write_text(yaml.safe_dump(config_to_dict(tiny)))
    (tmp_path / "good.csv").write_text(GOOD)
    (tmp_path / "bad.csv").write_text(GOOD + "c.jpg,1 1,1\n")
    assert main(["validate", str(tmp_path / "good.csv"), "-c", str(cfg_path)]) == 0
    assert "4 rows, valid" in capsys.readouterr().out
    assert main(["validate", "-c", str(cfg_path), str(tmp_path / "bad.csv"), "name=other"]) == 1
    out = capsys.readouterr().out
    assert "row 6: image 'c.jpg' class 1 is not in the sample submission" in out and "INVALID" in out


# b.jpg class 1 is "5 2 10 4" = pixels 5, 6, 10-13 (row 4); its class 2 row (row 5) is replaced below
OVERLAP = _bad_row(GOOD, 5, "12 3")  # pixels 12-14: 12 and 13 are claimed by both classes


def test_exclusive_overlap_names_image_classes_rows_and_pixels(tmp_path):
    (tmp_path / "sample_submission.csv").write_text(SAMPLE)
    cfg = _cfg(tmp_path, exclusive=True)
    assert _check(cfg, tmp_path, GOOD).ok
    report = _check(cfg, tmp_path, OVERLAP)
    assert report.problems == [
        "image 'b.jpg': 2 pixel(s) claimed by more than one class, but the classes of tiny are exclusive "
        "(competition.exclusive: each pixel in at most one class); shared pixels by class pair: "
        "1 (row 4) and 2 (row 5): 2"
    ]
    assert _check(cfg, tmp_path, _bad_row(GOOD, 5, "14 3")).ok  # pixels 14-16 touch the class 1 run: no overlap
    # a duplicate row of one class is a duplicate, not an overlap with itself
    report = _check(cfg, tmp_path, GOOD + "b.jpg,5 2 10 4,1\n")
    assert report.problems == ["row 6: duplicate of row 4 (image 'b.jpg' class 1)"]


def test_overlap_is_fine_for_overlapping_classes_and_an_error_for_multiclass(tiny, tmp_path):
    assert not tiny.competition.exclusive
    assert _check(tiny, tmp_path, OVERLAP).ok  # multilabel without the flag (Clouds): classes may overlap
    multiclass = _cfg(tmp_path, mode="multiclass")
    assert multiclass.competition.exclusive  # multiclass implies exclusive
    report = _check(multiclass, tmp_path, OVERLAP)
    assert len(report.problems) == 1 and report.problems[0].startswith("image 'b.jpg': 2 pixel(s)")


def test_overlap_counts_each_pair_of_classes(tmp_path):
    sample = "ImageId,EncodedPixels,ClassId\n" + "".join(f"a.jpg,1 1,{c}\n" for c in (1, 2, 3))
    (tmp_path / "sample_submission.csv").write_text(sample)
    cfg = _cfg(tmp_path, classes=["c1", "c2", "c3"], class_labels=["1", "2", "3"], exclusive=True)
    # class 1 pixels 1-4, class 2 pixels 6-7, class 3 pixels 2-7: 3 shared with class 1, 2 with class 2
    text = "ImageId,EncodedPixels,ClassId\na.jpg,1 4,1\na.jpg,6 2,2\na.jpg,2 6,3\n"
    report = _check(cfg, tmp_path, text)
    assert report.problems == [
        "image 'a.jpg': 5 pixel(s) claimed by more than one class, but the classes of tiny are exclusive "
        "(competition.exclusive: each pixel in at most one class); shared pixels by class pair: "
        "1 (row 2) and 3 (row 4): 3; 2 (row 3) and 3 (row 4): 2"
    ]
