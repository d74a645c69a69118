"""ISBI 2012 EM membrane segmentation miniature: 512x512 gray, CRLF csvs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from kseg.demo.common import Encoder, sample_rows, smooth_noise, to_uint8, write_csv, write_image


def _membranes(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One EM slice: (gray uint8 [S, S], membrane mask uint8 [S, S] ~20% of pixels): Voronoi cell walls."""
    seeds = np.full((size, size), 255, np.uint8)
    n = int(rng.integers(90, 140))
    seeds[rng.integers(0, size, n), rng.integers(0, size, n)] = 0
    _, labels = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_CCOMP)
    edge = np.zeros((size, size), np.uint8)
    edge[:, 1:] |= (labels[:, 1:] != labels[:, :-1]).astype(np.uint8)
    edge[1:, :] |= (labels[1:, :] != labels[:-1, :]).astype(np.uint8)
    mask = cv2.dilate(edge, np.ones((7, 7), np.uint8))
    gray = 165 + 10 * smooth_noise(rng, size, size, 8) - 80 * cv2.GaussianBlur(mask.astype(np.float32), (5, 5), 0)
    blobs = np.zeros((size, size), np.uint8)  # mitochondria: dark, but not membrane
    for _ in range(int(rng.integers(4, 9))):
        centre = (int(rng.integers(size)), int(rng.integers(size)))
        axes = (int(rng.integers(6, 14)), int(rng.integers(4, 8)))
        cv2.ellipse(blobs, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    gray = np.where((blobs > 0) & (mask == 0), gray - 45, gray)
    gray = gray + 8 * rng.standard_normal((size, size), dtype=np.float32)
    return to_uint8(gray), mask


def write_isbi2012(root: str | Path, seed: int = 0, n_train: int = 6, n_test: int = 2, *, encode: Encoder) -> Path:
    """ISBI 2012 EM membranes: ``train_images/isbi_NN.png`` 512x512 8-bit gray, ``test_images/isbi_test_NN.png``.

    ``train.csv`` = ``ImageId,EncodedPixels`` (membrane = 1), ``sample_submission.csv`` with empty RLEs,
    both with CRLF line ends like ``../shared/data/isbi2012``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_train):
        gray, mask = _membranes(rng, 512)
        write_image(root / "train_images" / f"isbi_{i:02d}.png", gray)
        rows.append((f"isbi_{i:02d}.png", encode(mask)))
    for i in range(n_test):
        gray, _ = _membranes(rng, 512)
        write_image(root / "test_images" / f"isbi_test_{i:02d}.png", gray)
    write_csv(root / "train.csv", pd.DataFrame(rows, columns=["ImageId", "EncodedPixels"]), "\r\n")
    test_files = [f"isbi_test_{i:02d}.png" for i in range(n_test)]
    write_csv(root / "sample_submission.csv", sample_rows(test_files, ["ImageId", "EncodedPixels"], ""), "\r\n")
    return root
