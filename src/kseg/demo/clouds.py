"""Understanding Clouds miniature: 4 overlapping cloud patterns, ``Image_Label`` rows."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from kseg.demo.common import Encoder, smooth_noise, to_uint8, train_test_ids, write_csv, write_image

CLOUD_LABELS = ("Fish", "Flower", "Gravel", "Sugar")
_CLOUD_LEVEL = np.array([215.0, 175.0, 140.0, 110.0], dtype=np.float32)  # Fish, Flower, Gravel, Sugar


def _cloud_texture(rng: np.random.Generator, cls: int, h: int, w: int) -> np.ndarray:
    """float32 [h, w] cloud field of pattern ``cls``: level per class, texture scale per class."""
    scale = (24, 12, 4, 2)[cls]
    field_ = smooth_noise(rng, h, w, scale, 1.0)
    return _CLOUD_LEVEL[cls] + 18.0 * field_


def write_clouds(
    root: str | Path, seed: int = 0, n_train: int = 12, n_test: int = 4, p_empty: float = 0.1, *, encode: Encoder
) -> Path:
    """Understanding Clouds: ``train_images/<7 hex>.jpg`` 1400x2100 (H x W), 4 overlapping cloud patterns.

    ``train.csv`` = ``Image_Label,EncodedPixels`` with all 4 ``<file>_<Fish|Flower|Gravel|Sugar>`` rows per
    image (empty cells allowed), masks are unions of boxes like the crowd labels; some images have the black
    no-data band of the satellite swaths. ``sample_submission.csv`` lists test images x labels (Kaggle scored
    it at 350x525).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    full_h, full_w, q = 1400, 2100, 4  # drawn at a quarter size, upsampled
    h, w = full_h // q, full_w // q
    train_ids, test_ids = train_test_ids(rng, n_train, n_test, 7)
    rows = []
    for split, split_ids in (("train", train_ids), ("test", test_ids)):
        for k, image_id in enumerate(split_ids):
            ocean = 45 + 6 * smooth_noise(rng, h, w, 16)
            gray = ocean.copy()
            masks = np.zeros((4, h, w), np.uint8)
            if (split == "train" and k < 4) or rng.random() >= p_empty:
                chosen = rng.choice(4, size=int(rng.integers(1, 4)), replace=False)
                if split == "train" and k < 4 and k not in chosen:  # every pattern occurs in training
                    chosen = np.append(chosen, k)
                for cls in chosen:
                    for _ in range(int(rng.integers(1, 3))):
                        bh, bw = int(rng.uniform(0.2, 0.5) * h), int(rng.uniform(0.15, 0.4) * w)
                        y, x = int(rng.integers(0, h - bh)), int(rng.integers(0, w - bw))
                        masks[cls, y : y + bh, x : x + bw] = 1
                    tex = _cloud_texture(rng, int(cls), h, w)
                    gray = np.where(masks[cls] > 0, tex, gray)
            if rng.random() < 0.4:  # no-data band between satellite swaths
                x0, slope = rng.uniform(0, w), rng.uniform(-0.5, 0.5)
                xx = np.arange(w)[None, :] - (x0 + slope * np.arange(h)[:, None])
                gray = np.where(np.abs(xx) < w * 0.04, 0.0, gray)
            big = cv2.resize(gray.astype(np.float32), (full_w, full_h), interpolation=cv2.INTER_LINEAR)
            rgb = np.stack([big * 0.95, big * 0.98, big * 1.05], axis=-1)
            file = f"{image_id}.jpg"
            write_image(root / f"{split}_images" / file, to_uint8(rgb), quality=90)
            if split == "train":
                for cls, label in enumerate(CLOUD_LABELS):
                    full = cv2.resize(masks[cls], (full_w, full_h), interpolation=cv2.INTER_NEAREST)
                    rows.append((f"{file}_{label}", encode(full)))
    write_csv(root / "train.csv", pd.DataFrame(rows, columns=["Image_Label", "EncodedPixels"]))
    sample = pd.DataFrame(
        [(f"{i}.jpg_{lab}", "1 1") for i in test_ids for lab in CLOUD_LABELS], columns=["Image_Label", "EncodedPixels"]
    )
    write_csv(root / "sample_submission.csv", sample)
    return root
