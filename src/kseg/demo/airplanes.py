"""Airport tiles miniature (our own binary layout): airplanes with shadows and taxiway distractors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from kseg.demo.common import Encoder, sample_rows, smooth_noise, to_uint8, train_test_ids, write_csv, write_image


def _airplane(cx: float, cy: float, size: float, angle: float) -> list[np.ndarray]:
    """int32 polygons [K, 2] (fuselage, wings, tail) of an airplane rotated by ``angle`` radians."""
    fus = [(-0.5, -0.06), (0.5, -0.06), (0.55, 0.0), (0.5, 0.06), (-0.5, 0.06)]
    wings = [(0.1, 0.0), (-0.1, -0.5), (-0.22, -0.5), (-0.1, 0.0), (-0.22, 0.5), (-0.1, 0.5)]
    tail = [(-0.38, 0.0), (-0.5, -0.2), (-0.56, -0.2), (-0.5, 0.0), (-0.56, 0.2), (-0.5, 0.2)]
    c, s = np.cos(angle), np.sin(angle)
    out = []
    for poly in (fus, wings, tail):
        p = np.array(poly, np.float32) * size
        rot = np.stack([p[:, 0] * c - p[:, 1] * s + cx, p[:, 0] * s + p[:, 1] * c + cy], axis=1)
        out.append(np.round(rot).astype(np.int32))
    return out


def write_airplanes(
    root: str | Path, seed: int = 0, n_train: int = 16, n_test: int = 4, p_empty: float = 0.3, *, encode: Encoder
) -> Path:
    """Airport tiles (our own binary layout): ``train_images/<8 hex>.jpg`` 512x512 RGB, class airplane.

    ``train.csv`` = ``ImageId,EncodedPixels`` (ids with extension), one row per image, empty cell when no
    airplane; ``sample_submission.csv`` the same columns with ``1 1``. Taxiway lines and shadows are
    bright / dark distractors that are not airplanes.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    size = 512
    train_ids, test_ids = train_test_ids(rng, n_train, n_test, 8)
    rows = []
    for split, split_ids in (("train", train_ids), ("test", test_ids)):
        for k, image_id in enumerate(split_ids):
            rgb = np.empty((size, size, 3), np.float32)
            rgb[:] = np.array([105, 105, 100], np.float32) + 8 * smooth_noise(rng, size, size, 32)[..., None]
            grass = np.zeros((size, size), np.uint8)
            for _ in range(int(rng.integers(0, 3))):
                x, y = int(rng.integers(size)), int(rng.integers(size))
                cv2.rectangle(grass, (x, y), (x + int(rng.integers(60, 200)), y + int(rng.integers(60, 200))), 1, -1)
            rgb[grass > 0] = (70, 120, 55)
            lines = np.zeros((size, size), np.uint8)
            for _ in range(int(rng.integers(1, 4))):
                p0, p1 = rng.integers(0, size, 2), rng.integers(0, size, 2)
                cv2.line(lines, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), 1, 3)
            rgb[lines > 0] = (210, 190, 70)  # yellow taxiway lines
            mask = np.zeros((size, size), np.uint8)
            if (split == "train" and k == 0) or rng.random() >= p_empty:
                for _ in range(int(rng.integers(1, 4))):
                    span, ang = rng.uniform(40, 110), rng.uniform(0, 2 * np.pi)
                    cx, cy = rng.uniform(span / 2, size - span / 2, 2)
                    shadow = np.zeros((size, size), np.uint8)
                    cv2.fillPoly(shadow, _airplane(cx + 6, cy + 6, span, ang), 1)
                    rgb[shadow > 0] *= 0.5
                    cv2.fillPoly(mask, _airplane(cx, cy, span, ang), 1)
            rgb[mask > 0] = (240, 240, 245)
            rgb += 5 * rng.standard_normal((size, size, 1), dtype=np.float32)
            write_image(root / f"{split}_images" / f"{image_id}.jpg", to_uint8(rgb))
            if split == "train":
                rows.append((f"{image_id}.jpg", encode(mask)))
    write_csv(root / "train.csv", pd.DataFrame(rows, columns=["ImageId", "EncodedPixels"]))
    test_files = [f"{i}.jpg" for i in test_ids]
    write_csv(root / "sample_submission.csv", sample_rows(test_files, ["ImageId", "EncodedPixels"], "1 1"))
    return root
