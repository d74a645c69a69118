"""Submission writer: row order and format of sample_submission.csv for every competition layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from kseg.competition import CompetitionSpec, CsvSpec
from kseg.data.dataset import read_pseudo_labels
from kseg.submission.write import SubmissionWriter, TrainCsvWriter, write_submission

TGS = CompetitionSpec(
    name="tgs",
    classes=("salt",),
    train=CsvSpec("single", "id", "rle_mask"),
    submission=CsvSpec("single", "id", "rle_mask"),
)
CARVANA = CompetitionSpec(
    name="carvana",
    classes=("car",),
    ids_have_ext=True,
    image_ext=".jpg",
    train=CsvSpec("single", "img", "rle_mask"),
    submission=CsvSpec("single", "img", "rle_mask"),
)
SEVERSTAL_OLD = CompetitionSpec(  # first Severstal release: ImageId_ClassId combined ids
    name="severstal-old",
    classes=("d1", "d2", "d3", "d4"),
    mode="multilabel",
    ids_have_ext=True,
    image_ext=".jpg",
    train=CsvSpec("combined", "ImageId_ClassId", "EncodedPixels"),
    submission=CsvSpec("combined", "ImageId_ClassId", "EncodedPixels"),
)
SEVERSTAL = CompetitionSpec(
    name="severstal",
    classes=("d1", "d2", "d3", "d4"),
    mode="multilabel",
    ids_have_ext=True,
    image_ext=".jpg",
    train=CsvSpec("long", "ImageId", "EncodedPixels", "ClassId"),
    submission=CsvSpec("long", "ImageId", "EncodedPixels", "ClassId"),
)
CLOUDS = CompetitionSpec(
    name="clouds",
    classes=("Fish", "Flower", "Gravel", "Sugar"),
    class_labels=("Fish", "Flower", "Gravel", "Sugar"),
    mode="multilabel",
    ids_have_ext=True,
    image_ext=".jpg",
    image_size=(8, 12),
    submission_size=(2, 3),
    train=CsvSpec("image_label", "Image_Label", "EncodedPixels"),
    submission=CsvSpec("image_label", "Image_Label", "EncodedPixels"),
)


def write_sample(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "sample_submission.csv"
    p.write_bytes(text.encode())
    return p


def test_single_tgs_sample_order_with_images_out_of_order(tmp_path: Path) -> None:
    sample = write_sample(tmp_path, "id,rle_mask\n155410d6fa,1 1\n78b32781d1,1 1\n63db2a476a,1 1\n")
    out = tmp_path / "sub.csv"
    with SubmissionWriter(TGS, sample, out) as w:
        assert w.image_ids == ["155410d6fa", "78b32781d1", "63db2a476a"]
        w.add("63db2a476a", ["5 3"])
        w.add("155410d6fa", [""])
        assert not out.exists()  # atomic: nothing at the path before close
        w.add("78b32781d1", ["1 2 10 4"])
    assert out.read_text() == "id,rle_mask\n155410d6fa,\n78b32781d1,1 2 10 4\n63db2a476a,5 3\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_single_carvana_ids_with_extension(tmp_path: Path) -> None:
    sample = write_sample(tmp_path, "img,rle_mask\n0004d4463b50_01.jpg,1 1\n0004d4463b50_02.jpg,1 1\n")
    out = write_submission(
        CARVANA, sample, tmp_path / "sub.csv", [("0004d4463b50_02.jpg", ["3 1"]), ("0004d4463b50_01.jpg", ["7 2"])]
    )
    assert out.read_text() == "img,rle_mask\n0004d4463b50_01.jpg,7 2\n0004d4463b50_02.jpg,3 1\n"


def test_combined_image_class_ids(tmp_path: Path) -> None:
    sample = write_sample(
        tmp_path,
        "ImageId_ClassId,EncodedPixels\n"
        "a.jpg_1,1 1\na.jpg_2,1 1\na.jpg_3,1 1\na.jpg_4,1 1\n"
        "b.jpg_1,1 1\nb.jpg_2,1 1\nb.jpg_3,1 1\nb.jpg_4,1 1\n",
    )
    out = write_submission(
        SEVERSTAL_OLD, sample, tmp_path / "s.csv", [("a.jpg", ["1 2", "", "", "9 9"]), ("b.jpg", ["", "3 4", "", ""])]
    )
    assert out.read_text() == (
        "ImageId_ClassId,EncodedPixels\n"
        "a.jpg_1,1 2\na.jpg_2,\na.jpg_3,\na.jpg_4,9 9\n"
        "b.jpg_1,\nb.jpg_2,3 4\nb.jpg_3,\nb.jpg_4,\n"
    )


def test_long_keeps_sample_column_order_and_scattered_rows(tmp_path: Path) -> None:
    # Severstal's sample: ImageId,EncodedPixels,ClassId; here rows of one image are scattered and classes
    # listed in a shuffled order, and image b has only two classes in the sample
    sample = write_sample(
        tmp_path,
        "ImageId,EncodedPixels,ClassId\na.jpg,1 1,3\nb.jpg,1 1,1\na.jpg,1 1,1\na.jpg,1 1,2\nb.jpg,1 1,4\na.jpg,1 1,4\n",
    )
    out = tmp_path / "s.csv"
    with SubmissionWriter(SEVERSTAL, sample, out) as w:
        w.add("a.jpg", ["10 1", "20 2", "30 3", "40 4"])
        assert w.buffered_max == 3  # a's rows after b's first row wait for b
        w.add("b.jpg", ["50 5", "60 6", "70 7", "80 8"])
    assert out.read_text() == (
        "ImageId,EncodedPixels,ClassId\n"
        "a.jpg,30 3,3\nb.jpg,50 5,1\na.jpg,10 1,1\na.jpg,20 2,2\nb.jpg,80 8,4\na.jpg,40 4,4\n"
    )


def test_in_order_images_are_not_buffered(tmp_path: Path) -> None:
    sample = write_sample(
        tmp_path,
        "ImageId,EncodedPixels,ClassId\n" + "".join(f"i{k}.jpg,1 1,{c}\n" for k in range(5) for c in range(1, 5)),
    )
    with SubmissionWriter(SEVERSTAL, sample, tmp_path / "s.csv") as w:
        for k in range(5):
            w.add(f"i{k}.jpg", ["", "", "", "1 1"])
        assert w.buffered_max == 0
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[1:5] == ["i0.jpg,,1", "i0.jpg,,2", "i0.jpg,,3", "i0.jpg,1 1,4"]


def test_image_label_clouds(tmp_path: Path) -> None:
    sample = write_sample(
        tmp_path,
        "Image_Label,EncodedPixels\n"
        "002f507.jpg_Fish,1 1\n002f507.jpg_Flower,1 1\n002f507.jpg_Gravel,1 1\n002f507.jpg_Sugar,1 1\n"
        "0035ae9.jpg_Fish,1 1\n0035ae9.jpg_Flower,1 1\n0035ae9.jpg_Gravel,1 1\n0035ae9.jpg_Sugar,1 1\n",
    )
    out = write_submission(
        CLOUDS,
        sample,
        tmp_path / "s.csv",
        [("0035ae9.jpg", ["1 6", "", "", ""]), ("002f507.jpg", ["", "2 2", "4 1", ""])],
    )
    assert out.read_text() == (
        "Image_Label,EncodedPixels\n"
        "002f507.jpg_Fish,\n002f507.jpg_Flower,2 2\n002f507.jpg_Gravel,4 1\n002f507.jpg_Sugar,\n"
        "0035ae9.jpg_Fish,1 6\n0035ae9.jpg_Flower,\n0035ae9.jpg_Gravel,\n0035ae9.jpg_Sugar,\n"
    )


def test_header_and_crlf_kept_byte_for_byte(tmp_path: Path) -> None:
    sample = write_sample(tmp_path, "id,rle_mask\r\nx,1 1\r\n")
    out = write_submission(TGS, sample, tmp_path / "s.csv", [("x", ["2 3"])])
    assert out.read_bytes() == b"id,rle_mask\r\nx,2 3\r\n"


def test_errors(tmp_path: Path) -> None:
    sample = write_sample(tmp_path, "id,rle_mask\nx,1 1\ny,1 1\n")
    out = tmp_path / "s.csv"
    w = SubmissionWriter(TGS, sample, out)
    with pytest.raises(ValueError, match="'zz' is not in"):
        w.add("zz", [""])
    w.add("x", [""])
    with pytest.raises(ValueError, match="added twice"):
        w.add("x", [""])
    with pytest.raises(ValueError, match="2 masks for 1 classes"):
        w.add("y", ["", ""])
    with pytest.raises(ValueError, match=r"1 image\(s\).*'y'"):
        w.close()
    assert not out.exists() and list(tmp_path.iterdir()) == [sample]

    with pytest.raises(RuntimeError):  # an exception inside the block leaves nothing behind
        with SubmissionWriter(TGS, sample, out) as w2:
            w2.add("x", ["1 1"])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == [sample]

    dup = write_sample(tmp_path, "id,rle_mask\nx,1 1\nx,1 1\n")
    with pytest.raises(ValueError, match="row 3: image 'x'"):
        SubmissionWriter(TGS, dup, out)


# --------------------------------------------------------------------------- train-format csvs (pseudo-labels)


@pytest.mark.parametrize(
    "spec, expected",
    [
        (TGS, "id,rle_mask\nt1,1 2\nt2,\n"),
        (
            SEVERSTAL_OLD,
            "ImageId_ClassId,EncodedPixels\nt1_1,1 2\nt1_2,\nt1_3,\nt1_4,5 1\nt2_1,\nt2_2,\nt2_3,\nt2_4,\n",
        ),
        (SEVERSTAL, "ImageId,ClassId,EncodedPixels\nt1,1,1 2\nt1,4,5 1\nt2,1,\n"),
        (
            CLOUDS,
            "Image_Label,EncodedPixels\nt1_Fish,1 2\nt1_Flower,\nt1_Gravel,\nt1_Sugar,5 1\n"
            "t2_Fish,\nt2_Flower,\nt2_Gravel,\nt2_Sugar,\n",
        ),
    ],
    ids=["single", "combined", "long", "image_label"],
)
def test_train_csv_writer_formats(tmp_path: Path, spec: CompetitionSpec, expected: str) -> None:
    out = tmp_path / "pseudo.csv"
    with TrainCsvWriter(spec, out) as w:
        if spec.num_classes == 1:
            w.add("t1", ["1 2"])
            w.add("t2", [""])
        else:
            w.add("t1", ["1 2", "", "", "5 1"])
            w.add("t2", ["", "", "", ""])
    assert out.read_text() == expected


@pytest.mark.parametrize("spec", [TGS, SEVERSTAL_OLD, SEVERSTAL, CLOUDS], ids=lambda s: s.name)
def test_train_csv_round_trips_through_the_pseudo_label_reader(tmp_path: Path, spec: CompetitionSpec) -> None:
    from kseg.config import Config

    cfg = Config(competition=spec)
    masks = {"t1": ["1 2"] + ["", "", "5 1"][: spec.num_classes - 1], "t2": [""] * spec.num_classes}
    out = tmp_path / "pseudo.csv"
    with TrainCsvWriter(spec, out) as w:
        for k, v in masks.items():
            w.add(k, v)
    table = read_pseudo_labels(cfg, out)
    assert table.image_id.tolist() == ["t1", "t2"]
    for k, v in masks.items():
        assert table.set_index("image_id").loc[k, list(spec.classes)].tolist() == v
