from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from kseg.competition import CompetitionSpec, CsvSpec, list_test_ids, read_train_labels, split_rows
from kseg.config import load_config
from kseg.typed import ConfigError, from_dict

from conftest import REPO, shared_dataset

CONFIGS = REPO / "configs"


def spec_of(name: str) -> CompetitionSpec:
    import yaml

    return from_dict(CompetitionSpec, yaml.safe_load((CONFIGS / "competitions" / f"{name}.yaml").read_text()))


def touch_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"x")


@pytest.mark.parametrize(
    "name", ["severstal", "carvana", "clouds", "tgs-salt", "isbi2012", "demo", "uwmgi", "contrails"]
)
def test_every_shipped_spec_parses(name: str) -> None:
    spec = spec_of(name)
    assert spec.name == name
    assert len(spec.labels) == spec.num_classes


def test_severstal_long_format_only_nonempty_rows(tmp_path: Path) -> None:
    spec = spec_of("severstal")
    touch_images(tmp_path / "train_images", ["0002cc93b.jpg", "0007a71bf.jpg", "000a4bcdd.jpg"])
    (tmp_path / "train.csv").write_text(
        "ImageId,ClassId,EncodedPixels\n0002cc93b.jpg,1,29102 12 29346 24\n0007a71bf.jpg,3,18661 28\n"
        "0002cc93b.jpg,4,5 5\n"
    )
    t = read_train_labels(spec, tmp_path)
    assert t.image_id.tolist() == ["0002cc93b.jpg", "0007a71bf.jpg", "000a4bcdd.jpg"]  # empty image from folder
    assert t.loc[0, "defect1"] == "29102 12 29346 24" and t.loc[0, "defect4"] == "5 5"
    assert t.loc[1, "defect3"] == "18661 28" and t.loc[1, "defect1"] == ""
    assert (t.loc[2, list(spec.classes)] == "").all()
    assert spec.image_file("0002cc93b.jpg") == "0002cc93b.jpg"


def test_severstal_sample_submission_rows(tmp_path: Path) -> None:
    spec = spec_of("severstal")
    df = pd.DataFrame(
        {"ImageId": ["a.jpg", "a.jpg", "b.jpg"], "EncodedPixels": ["1 1"] * 3, "ClassId": ["1", "4", "2"]}
    )
    ids, cls = split_rows(spec, spec.submission, df, "sample")
    assert ids.tolist() == ["a.jpg", "a.jpg", "b.jpg"] and cls.tolist() == [0, 3, 1]


def test_old_severstal_combined_ids(tmp_path: Path) -> None:
    spec = CompetitionSpec(
        name="sev-old",
        classes=("1", "2", "3", "4"),
        mode="multilabel",
        ids_have_ext=True,
        image_ext=".jpg",
        train=CsvSpec(format="combined", id_column="ImageId_ClassId"),
        submission=CsvSpec(format="combined", id_column="ImageId_ClassId"),
    )
    (tmp_path / "train.csv").write_text(
        "ImageId_ClassId,EncodedPixels\n0002cc93b.jpg_1,1 3\n0002cc93b.jpg_2,\n0002cc93b.jpg_3,\n0002cc93b.jpg_4,\n"
        "00031f466.jpg_1,\n00031f466.jpg_2,\n00031f466.jpg_3,7 2\n00031f466.jpg_4,\n"
    )
    t = read_train_labels(spec, tmp_path)
    assert t.image_id.tolist() == ["0002cc93b.jpg", "00031f466.jpg"]
    assert t["1"].tolist() == ["1 3", ""] and t["3"].tolist() == ["", "7 2"]


def test_clouds_image_label(tmp_path: Path) -> None:
    spec = spec_of("clouds")
    (tmp_path / "train.csv").write_text(
        "Image_Label,EncodedPixels\n0011165.jpg_Fish,264918 937 266318 937\n0011165.jpg_Flower,1355565 1002\n"
        "0011165.jpg_Gravel,\n0011165.jpg_Sugar,\n002be4f.jpg_Fish,233813 878\n002be4f.jpg_Flower,\n"
        "002be4f.jpg_Gravel,\n002be4f.jpg_Sugar,5 6\n"
    )
    t = read_train_labels(spec, tmp_path)
    assert t.image_id.tolist() == ["0011165.jpg", "002be4f.jpg"]
    assert t.Fish.tolist() == ["264918 937 266318 937", "233813 878"]
    assert t.Sugar.tolist() == ["", "5 6"]
    assert spec.submission_size == (350, 525) and spec.image_size == (1400, 2100)


def test_carvana_single_with_car_groups(tmp_path: Path) -> None:
    spec = spec_of("carvana")
    (tmp_path / "train_masks.csv").write_text(
        "img,rle_mask\n00087a6bd4dc_01.jpg,879386 40 881253 141\n00087a6bd4dc_02.jpg,873779 4\n"
        "0cdf5b5d0ce1_01.jpg,1 2\n"
    )
    t = read_train_labels(spec, tmp_path)
    assert t.car.tolist() == ["879386 40 881253 141", "873779 4", "1 2"]
    assert spec.group_of(t.image_id).tolist() == ["00087a6bd4dc", "00087a6bd4dc", "0cdf5b5d0ce1"]


def test_tgs_and_isbi_real_csvs() -> None:
    tgs = read_train_labels(spec_of("tgs-salt"), shared_dataset("tgs-salt"))
    assert len(tgs) == 3000 and 0.35 < (tgs.salt == "").mean() < 0.43
    isbi_root = shared_dataset("isbi2012")
    isbi = read_train_labels(spec_of("isbi2012"), isbi_root)
    assert len(isbi) == 30 and (isbi.membrane != "").all()
    assert list_test_ids(spec_of("isbi2012"), isbi_root)[:2] == ["isbi_test_00.png", "isbi_test_01.png"]


def test_errors_name_file_row_and_field(tmp_path: Path) -> None:
    spec = spec_of("severstal")
    touch_images(tmp_path / "train_images", ["a.jpg"])
    (tmp_path / "train.csv").write_text("ImageId,ClassId,EncodedPixels\na.jpg,1,1 1\na.jpg,7,1 1\n")
    with pytest.raises(ValueError, match=r"train.csv: row 3: class '7' is not one of \['1', '2', '3', '4'\]"):
        read_train_labels(spec, tmp_path)
    (tmp_path / "train.csv").write_text("ImageId,ClassId,EncodedPixels\na.jpg,1,1 1\na.jpg,1,5 1\n")
    with pytest.raises(ValueError, match=r"row 3: duplicate mask for image 'a.jpg' class defect1"):
        read_train_labels(spec, tmp_path)
    (tmp_path / "train.csv").write_text("ImageId,ClassId,EncodedPixels\nzz.jpg,1,1 1\n")
    with pytest.raises(ValueError, match=r"image 'zz.jpg' has a mask but no file"):
        read_train_labels(spec, tmp_path)
    (tmp_path / "train.csv").write_text("Image,ClassId,EncodedPixels\na.jpg,1,1 1\n")
    with pytest.raises(ValueError, match=r"missing column 'ImageId'"):
        read_train_labels(spec, tmp_path)
    with pytest.raises(FileNotFoundError, match="nothere"):
        read_train_labels(spec, tmp_path / "nothere")


def test_spec_consistency_checks() -> None:
    with pytest.raises(ConfigError, match="binary needs exactly 1 class"):
        CompetitionSpec(name="x", classes=("a", "b"), mode="binary")
    with pytest.raises(ConfigError, match="'single' holds one class"):
        CompetitionSpec(name="x", classes=("a", "b"), mode="multilabel")
    with pytest.raises(ConfigError, match="2 labels for 1 classes"):
        CompetitionSpec(name="x", classes=("a",), class_labels=("1", "2"))


def test_competition_override_from_command_line() -> None:
    cfg = load_config(CONFIGS / "demo.yaml", ["competition.metric=iou_ap"])
    assert cfg.competition.metric == "iou_ap" and cfg.competition.name == "demo"


def test_empty_sample_submission_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = spec_of("tgs-salt")
    (tmp_path / spec.sample_submission).write_text("id,rle_mask\n")
    with caplog.at_level(logging.WARNING, logger="kseg.competition"):
        assert list_test_ids(spec, tmp_path) == []
    assert "has no rows" in caplog.text and spec.sample_submission in caplog.text
    (tmp_path / spec.sample_submission).write_text("id,rle_mask\nabc,1 1\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="kseg.competition"):
        assert list_test_ids(spec, tmp_path) == ["abc"]
    assert "has no rows" not in caplog.text
