"""Item 4: missing, zero-byte, truncated-JPEG and non-image files in the training or test set.

Dataset level (missing / zero-byte / truncated, error or skip) is covered by
tests/test_dataset.py::test_bad_files_error_or_skip and ::test_truncated_jpeg_error_or_skipped_batch, and
the decoder's messages by tests/test_images.py (::test_zero_byte_file, ::test_truncated_jpeg,
::test_text_file_named_png, ::test_missing_file). Here the whole stages: ``kseg train`` and ``kseg predict``
with bad files, by default (an error naming the file) and with ``data.on_bad_image=skip`` (skipped,
logged by name and counted, never silently).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

from kseg.cli import main
from kseg.data.dataset import read_labels
from kseg.data.images import ImageReadError
from kseg.models import build_model, save_checkpoint
from kseg.submission.validate import validate_submission
from kseg.train.fit import train_fold
from kseg.train.oof_store import read_oof

from _reliab import DEMO_YAML, overrides, tiny_cfg


@pytest.fixture()
def copy_root(demo_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    return root


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _split(cfg) -> tuple[list[str], list[str]]:
    folds = pd.read_csv(cfg.folds_path, dtype=str)
    return folds.ImageId[folds.fold != "0"].tolist(), folds.ImageId[folds.fold == "0"].tolist()


def test_training_skips_unreadable_files_and_counts_them(copy_root, tmp_path, caplog):
    cfg = tiny_cfg(copy_root, tmp_path, "train.epochs=1", "data.on_bad_image=skip")
    train_ids, val_ids = _split(cfg)
    img = copy_root / "train_images"
    _truncate(img / train_ids[0])  # truncated JPEG in the training split
    (img / train_ids[1]).write_text("this is not an image")  # non-image file in the training split
    _truncate(img / val_ids[2])  # truncated JPEG in the validation split
    with caplog.at_level(logging.WARNING):
        res = train_fold(cfg, 0)
    assert res.epochs == 1
    for name in (train_ids[0], train_ids[1], val_ids[2]):
        assert str(img / name) in caplog.text  # logged by file name
    assert "2 unreadable image(s) left out of their batches" in caplog.text  # counted per epoch
    assert "skipped 1 unreadable image file(s)" in caplog.text  # the validation image, dropped up front
    oof, ids = read_oof(cfg.fold_dir(0))
    assert ids == [i for i in val_ids if i != val_ids[2]] and len(oof) == len(val_ids) - 1


def test_training_stops_on_an_unreadable_file_by_default(copy_root, tmp_path):
    cfg = tiny_cfg(copy_root, tmp_path, "train.epochs=1")
    train_ids, _ = _split(cfg)
    bad = copy_root / "train_images" / train_ids[3]
    _truncate(bad)
    with pytest.raises(ImageReadError, match=rf"{bad}: truncated JPEG"):
        train_fold(cfg, 0)


@pytest.mark.parametrize("masked", [True, False], ids=["with-mask", "no-mask"])
def test_missing_training_file_error_or_skip(copy_root, tmp_path, caplog, masked):
    """Demo train.csv is long format: a masked image is named by the csv, an unmasked one only by folds.csv."""
    cfg = tiny_cfg(copy_root, tmp_path, "train.epochs=1")
    labels = read_labels(cfg)
    has_mask = (labels[list(cfg.competition.classes)] != "").any(axis=1)
    _, val_ids = _split(cfg)
    image = labels.image_id[has_mask == masked].loc[lambda s: s.isin(val_ids)].iloc[0]
    (copy_root / "train_images" / image).unlink()
    with caplog.at_level(logging.ERROR):
        assert (
            main(["train", "-c", str(DEMO_YAML), "--fold", "0", *overrides(copy_root, tmp_path, "train.epochs=1")]) == 1
        )
    assert repr(image) in caplog.text  # named before any training work
    assert ("has a mask but no file" if masked else "rerun `kseg folds") in caplog.text
    assert not cfg.fold_dir(0).exists()

    caplog.clear()
    skip = tiny_cfg(copy_root, tmp_path, "train.epochs=1", "data.on_bad_image=skip")
    with caplog.at_level(logging.WARNING):
        train_fold(skip, 0)
    assert image in caplog.text and "skip" in caplog.text
    assert image not in read_oof(skip.fold_dir(0))[1]


def _predict(cfg, root: Path, tmp_path: Path, caplog, *extra: str) -> int:
    best = cfg.fold_dir(0) / "best.pt"
    best.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(best, build_model(cfg), cfg)
    argv = [
        "predict",
        "-c",
        str(DEMO_YAML),
        "--out",
        str(tmp_path / "sub.csv"),
        "--no-progress",
        *overrides(root, tmp_path, *extra),
    ]
    with caplog.at_level(logging.WARNING):
        return main(argv)


def test_predict_bad_test_image_error_or_empty_rows(copy_root, tmp_path, caplog):
    cfg = tiny_cfg(copy_root, tmp_path)
    tests = sorted((copy_root / "test_images").iterdir())
    _truncate(tests[1])
    tests[3].write_bytes(b"")
    assert _predict(cfg, copy_root, tmp_path, caplog) == 1
    assert str(tests[3]) in caplog.text and "empty" in caplog.text  # zero-byte: refused before predicting
    assert not (tmp_path / "sub.csv").exists()

    caplog.clear()
    skip = tiny_cfg(copy_root, tmp_path, "data.on_bad_image=skip")
    assert _predict(skip, copy_root, tmp_path, caplog, "data.on_bad_image=skip") == 0
    assert str(tests[1]) in caplog.text and str(tests[3]) in caplog.text
    assert "2 unreadable test image(s) get empty masks" in caplog.text
    sub = pd.read_csv(tmp_path / "sub.csv", dtype=str, keep_default_na=False)
    for bad in (tests[1].name, tests[3].name):
        assert (sub.EncodedPixels[sub.ImageId == bad] == "").all()
    assert validate_submission(tmp_path / "sub.csv", skip).ok  # every row Kaggle expects is there
