"""Item 14: a folds.csv that does not match train.csv, and OOF files that do not match folds.csv.

Each broken folds.csv fails with the file, the row or image and what to do, before any training work;
``kseg tune`` refuses OOF predictions stored under other folds than folds.csv says.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kseg.cli import main
from kseg.data.dataset import read_labels
from kseg.data.folds import fold_split, read_folds
from kseg.tune.run import tune

from _reliab import DEMO_YAML, overrides, tiny_cfg


def _rewrite(cfg, edit) -> None:
    df = pd.read_csv(cfg.folds_path, dtype=str)
    edit(df).to_csv(cfg.folds_path, index=False)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda df: df.drop(index=5),
            "has no fold (1 images missing); folds.csv was made for other data: rerun `kseg folds",
        ),
        (
            lambda df: pd.concat([df, pd.DataFrame({"ImageId": ["ghost.jpg"], "fold": ["1"]})]),
            "row 26: image 'ghost.jpg' is not a training image of",
        ),
    ],
    ids=["id-missing", "id-extra"],
)
def test_folds_csv_ids_must_match_train_csv(demo_root, tmp_path, edit, message):
    cfg = tiny_cfg(demo_root, tmp_path)
    _rewrite(cfg, edit)
    with pytest.raises(ValueError, match="folds.csv") as e:
        fold_split(cfg, 0, read_labels(cfg))
    assert message in str(e.value)


@pytest.mark.parametrize(
    "value, shown",
    [("3", "'3'"), ("-1", "'-1'"), ("1.5", "'1.5'"), ("x", "'x'"), ("", "''")],
)
def test_fold_out_of_range_or_not_an_integer_names_the_row(demo_root, tmp_path, value, shown):
    cfg = tiny_cfg(demo_root, tmp_path)  # demo: data.n_folds = 3

    def edit(df):
        df.loc[3, "fold"] = value
        return df

    _rewrite(cfg, edit)
    image = pd.read_csv(cfg.folds_path, dtype=str, keep_default_na=False).ImageId[3]
    with pytest.raises(ValueError) as e:
        read_folds(cfg)
    assert f"row 5: fold {shown} of image '{image}' is not an integer in 0..2 (data.n_folds=3)" in str(e.value)


def test_image_in_two_folds_names_both_rows(demo_root, tmp_path):
    cfg = tiny_cfg(demo_root, tmp_path)
    df = pd.read_csv(cfg.folds_path, dtype=str)
    image, fold = df.ImageId[0], int(df.fold[0])
    other = str((fold + 1) % 3)
    _rewrite(cfg, lambda d: pd.concat([d, pd.DataFrame({"ImageId": [image], "fold": [other]})]))
    with pytest.raises(
        ValueError, match=rf"image '{image}' is listed more than once \(rows 2, 26, folds {fold}, {other}\)"
    ):
        read_folds(cfg)


def test_kseg_train_stops_before_training_on_a_stale_folds_csv(demo_root, tmp_path, caplog):
    cfg = tiny_cfg(demo_root, tmp_path)
    _rewrite(cfg, lambda df: df.drop(index=0))
    argv = ["train", "-c", str(DEMO_YAML), "--fold", "0", *overrides(demo_root, tmp_path)]
    with caplog.at_level(logging.ERROR):
        assert main(argv) == 1
    assert "has no fold" in caplog.text and "rerun `kseg folds" in caplog.text
    assert not cfg.fold_dir(0).exists()  # nothing was trained or written


# --------------------------------------------------------------------------- OOF vs folds.csv

TUNE = ("tune.thresholds=[0.5]", "tune.min_sizes=[0]")


def _fake_oof(cfg) -> None:
    """An all-zero OOF store for every fold of folds.csv (what kseg train writes, minus the training)."""
    folds = read_folds(cfg)
    for k in sorted(folds.fold.unique()):
        ids = folds.image_id[folds.fold == k].tolist()
        d = cfg.fold_dir(k)
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "oof.npy", np.zeros((len(ids), 4, 128, 256), np.uint8))
        pd.DataFrame({"image_id": ids}).to_csv(d / "oof_ids.csv", index=False)


def test_tune_refuses_oof_from_other_folds(demo_root, tmp_path):
    cfg = tiny_cfg(demo_root, tmp_path, *TUNE)
    _fake_oof(cfg)
    assert tune(cfg, progress=False).n_images == 24  # consistent: tunes
    cfg.folds_path.unlink()  # new folds (another seed) after training: the OOF no longer matches
    cfg2 = tiny_cfg(demo_root, tmp_path, *TUNE, "data.fold_seed=7")
    with pytest.raises(
        ValueError, match=r"fold0/oof_ids.csv: row \d+: OOF image '.+' of fold 0 is in fold [12] of"
    ) as e:
        tune(cfg2, progress=False)
    assert "retrain" in str(e.value)


def test_tune_refuses_oof_missing_images_unless_they_were_skipped(demo_root, tmp_path, caplog):
    cfg = tiny_cfg(demo_root, tmp_path, *TUNE)
    _fake_oof(cfg)
    d = cfg.fold_dir(1)
    ids = pd.read_csv(d / "oof_ids.csv", dtype=str)
    ids.iloc[1:].to_csv(d / "oof_ids.csv", index=False)
    np.save(d / "oof.npy", np.load(d / "oof.npy")[1:])
    with pytest.raises(
        ValueError, match=rf"fold 1 of .*folds.csv has 1 image\(s\) without an OOF prediction, e.g. '{ids.image_id[0]}'"
    ):
        tune(cfg, progress=False)
    skip = tiny_cfg(demo_root, tmp_path, *TUNE, "data.on_bad_image=skip")
    with caplog.at_level(logging.WARNING):
        assert tune(skip, progress=False).n_images == 23
    assert "dropped as unreadable" in caplog.text


def test_kseg_tune_exit_code_and_message(demo_root, tmp_path, caplog):
    cfg = tiny_cfg(demo_root, tmp_path, *TUNE)
    _fake_oof(cfg)
    ids = pd.read_csv(cfg.fold_dir(0) / "oof_ids.csv", dtype=str)
    ids.loc[0, "image_id"] = "ghost.jpg"
    ids.to_csv(cfg.fold_dir(0) / "oof_ids.csv", index=False)
    argv = ["tune", "-c", str(DEMO_YAML), "--no-plots", *overrides(demo_root, tmp_path, *TUNE)]
    with caplog.at_level(logging.ERROR):
        assert main(argv) == 1
    assert "OOF image 'ghost.jpg' of fold 0 is not in" in caplog.text
    assert not (Path(cfg.run_dir) / "postprocess.json").exists()
