"""Item 5: masks and images that disagree: an RLE running past the image, an image whose size is not the
one the competition's masks are encoded at, a malformed RLE in train.csv. Each error names the image id
and both sizes (the decoder's own cases are in tests/test_dataset.py::test_mask_past_image_names_id_and_size).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from kseg.data.dataset import SegDataset, read_labels
from kseg.train.fit import train_fold

from _reliab import tiny_cfg


@pytest.fixture()
def copy_root(demo_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    return root


def _set_rle(root: Path, rle: str) -> str:
    """Replace the first mask of train.csv; returns its image id."""
    df = pd.read_csv(root / "train.csv", dtype=str)
    df.loc[0, "EncodedPixels"] = rle
    df.to_csv(root / "train.csv", index=False)
    return df.ImageId[0]


def test_rle_past_the_image_names_id_and_both_sizes(copy_root, tmp_path):
    image = _set_rle(copy_root, f"{128 * 256 - 5} 10")  # demo images are 128x256 = 32768 pixels
    cfg = tiny_cfg(copy_root, tmp_path)
    with pytest.raises(ValueError) as e:
        SegDataset(cfg, [image], read_labels(cfg))[0]
    msg = str(e.value)
    assert msg.startswith(f"image '{image}' class ") and "does not fit the 128x256 image" in msg
    assert "ends at pixel 32772, past the image end 32768" in msg


def test_malformed_rle_names_the_image(copy_root, tmp_path):
    cfg = tiny_cfg(copy_root, tmp_path)  # folds.csv first: kseg folds itself refuses the bad RLE (below)
    image = _set_rle(copy_root, "5 3 9")
    with pytest.raises(
        ValueError,
        match=rf"train.csv: row 2: image '{image}' class \w+: malformed RLE in the "
        "training labels: .*odd number.*RLE dialect column-major",
    ):
        SegDataset(cfg, [image], read_labels(cfg))[0]


def test_image_not_at_the_mask_size_names_id_and_both_sizes(copy_root, tmp_path):
    cfg = tiny_cfg(copy_root, tmp_path, "train.epochs=1")
    image = read_labels(cfg).image_id.iloc[2]
    path = copy_root / "train_images" / image
    cv2.imwrite(str(path), np.zeros((100, 256, 3), np.uint8))  # masks are encoded at 128x256
    with pytest.raises(ValueError) as e:
        SegDataset(cfg, [image], read_labels(cfg))[0]
    assert str(e.value) == (
        f"image '{image}': {path} is 100x256, but its masks are encoded at competition.image_size 128x256"
    )
    with pytest.raises(ValueError, match=f"image '{image}': .* is 100x256"):  # and training stops on it
        train_fold(cfg, 0)


def test_unlabelled_test_image_of_another_size_is_fine(copy_root, tmp_path):
    """Only labelled items are checked: test images are restored to the submission size whatever theirs."""
    cfg = tiny_cfg(copy_root, tmp_path)
    test = sorted((copy_root / "test_images").iterdir())[0]
    cv2.imwrite(str(test), np.zeros((100, 256, 3), np.uint8))
    item = SegDataset(cfg, [test.name], image_dir=copy_root / "test_images")[0]
    assert item["size"].tolist() == [100, 256] and "mask" not in item


def test_kseg_folds_names_the_image_of_a_malformed_rle(copy_root, tmp_path):
    image = _set_rle(copy_root, "5 3 9")
    with pytest.raises(ValueError, match=rf"image '{image}' class \w+: malformed RLE in the training labels: .*odd"):
        tiny_cfg(copy_root, tmp_path)  # writes folds.csv
