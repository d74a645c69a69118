"""Severstal steel defects miniature (``kseg demo --competition severstal``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kseg.demo.common import Encoder, train_test_ids, write_csv, write_image
from kseg.demo.synthetic import make_sample


def write_severstal(
    root: str | Path, seed: int = 0, n_train: int = 16, n_test: int = 4, p_empty: float = 0.45, *, encode: Encoder
) -> Path:
    """Severstal steel defects: ``train_images/<9 hex>.jpg`` 256x1600 RGB (grey steel), 4 defect classes.

    ``train.csv`` = ``ImageId,ClassId,EncodedPixels`` with only non-empty rows; ``sample_submission.csv`` =
    ``ImageId,EncodedPixels,ClassId`` (that column order), one row per test image x class.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    train_ids, test_ids = train_test_ids(rng, n_train, n_test, 9)
    rows = []
    for split, split_ids in (("train", train_ids), ("test", test_ids)):
        for k, image_id in enumerate(split_ids):
            forced = (k,) if split == "train" and k < 4 else None  # every class occurs in training
            bgr, masks = make_sample(rng, 256, 1600, p_empty, forced)
            write_image(root / f"{split}_images" / f"{image_id}.jpg", bgr[..., ::-1])
            if split == "train":
                rows += [(f"{image_id}.jpg", c + 1, encode(masks[c])) for c in range(4) if masks[c].any()]
    write_csv(root / "train.csv", pd.DataFrame(rows, columns=["ImageId", "ClassId", "EncodedPixels"]))
    sample = pd.DataFrame(
        [(f"{i}.jpg", "1 1", c) for i in test_ids for c in range(1, 5)], columns=["ImageId", "EncodedPixels", "ClassId"]
    )
    write_csv(root / "sample_submission.csv", sample)
    return root
