"""kseg.kernel.smoke: the sample of training ids the kernel predicts when the sample submission has no rows."""

from __future__ import annotations

import pandas as pd
import pytest

from kseg.competition import CompetitionSpec, CsvSpec, split_rows
from kseg.kernel.smoke import sample_rows


def _spec(fmt: str, **csv) -> CompetitionSpec:
    sub = CsvSpec(format=fmt, **csv)
    return CompetitionSpec(
        name="t", classes=("a", "b"), class_labels=("a", "b"), mode="multilabel", train=sub, submission=sub
    )


def test_long_rows_per_id_and_class_in_the_sample_column_order() -> None:
    spec = _spec("long", id_column="id", class_column="class", rle_column="predicted")
    got = sample_rows(spec, ["id", "class", "predicted"], ["x", "y"])
    want = pd.DataFrame({"id": ["x", "x", "y", "y"], "class": ["a", "b", "a", "b"], "predicted": [""] * 4})
    pd.testing.assert_frame_equal(got, want)
    ids, cls = split_rows(spec, spec.submission, got, "smoke")  # read back as the sample would be
    assert ids.tolist() == ["x", "x", "y", "y"] and cls.tolist() == [0, 1, 0, 1]


def test_single_and_combined_rows() -> None:
    single = CompetitionSpec(name="t", classes=("c",), submission=CsvSpec(id_column="record_id", rle_column="rle"))
    got = sample_rows(single, ["record_id", "rle"], ["7", "8"])
    pd.testing.assert_frame_equal(got, pd.DataFrame({"record_id": ["7", "8"], "rle": ["", ""]}))
    combined = _spec("image_label", id_column="Image_Label", rle_column="EncodedPixels")
    got = sample_rows(combined, ["Image_Label", "EncodedPixels"], ["p.jpg"])
    assert got["Image_Label"].tolist() == ["p.jpg_a", "p.jpg_b"] and got["EncodedPixels"].tolist() == ["", ""]


def test_a_column_without_a_value_is_named() -> None:
    with pytest.raises(ValueError, match="no value for column 'Usage'"):
        sample_rows(
            _spec("long", id_column="id", class_column="class", rle_column="p"), ["id", "class", "p", "Usage"], ["x"]
        )


def test_skipped_without_training_data_or_when_off(tmp_path, caplog) -> None:
    """A kernel without the training data attached (or kernel.smoke_images=0) does not fail its commit run."""
    from kseg.kernel.smoke import main

    from conftest import REPO

    (tmp_path / "sample_submission.csv").write_text("ImageId,EncodedPixels\n")
    argv = ["-c", str(REPO / "configs/demo.yaml"), "--out", str(tmp_path / "s.csv"), f"data.root={tmp_path}"]
    assert main(argv) == 0 and "smoke test skipped" in caplog.text and "train.csv" in caplog.text
    assert main([*argv, "kernel.smoke_images=0"]) == 0 and "kernel.smoke_images=0" in caplog.text
    assert not (tmp_path / "s.csv").exists()
