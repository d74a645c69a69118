from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from kseg.demo.synthetic import make_demo


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_demo_is_deterministic_and_severstal_shaped(tmp_path: Path) -> None:
    a = make_demo(tmp_path / "a", seed=3, n_train=20, n_test=5)
    b = make_demo(tmp_path / "b", seed=3, n_train=20, n_test=5)
    c = make_demo(tmp_path / "c", seed=4, n_train=20, n_test=5)
    assert digest(a) == digest(b) != digest(c)
    train = pd.read_csv(a / "train.csv")
    assert list(train.columns) == ["ImageId", "ClassId", "EncodedPixels"]
    assert train.EncodedPixels.notna().all() and set(train.ClassId) <= {1, 2, 3, 4}  # only non-empty rows
    n_images = len(list((a / "train_images").iterdir()))
    assert n_images == 20 and 0.2 <= 1 - train.ImageId.nunique() / n_images <= 0.8  # about half empty
    sample = pd.read_csv(a / "sample_submission.csv")
    assert list(sample.columns) == ["ImageId", "EncodedPixels", "ClassId"] and len(sample) == 5 * 4
