"""Carvana image masking miniature: cars seen from 16 angles, GIF masks, ``metadata.csv``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from kseg.demo.common import Encoder, sample_rows, smooth_noise, train_test_ids, write_csv, write_gif_mask, write_image

CARVANA_ANGLES = 16


def carvana_angles(angles: int | Sequence[int]) -> list[int]:
    """Angle numbers 1..16: all of a sequence, or ``angles`` evenly spaced ones (16 -> 1..16, 2 -> 1, 9)."""
    if isinstance(angles, int):
        if not 1 <= angles <= CARVANA_ANGLES:
            raise ValueError(f"angles: between 1 and {CARVANA_ANGLES}, got {angles}")
        return [1 + (CARVANA_ANGLES * i) // angles for i in range(angles)]
    out = sorted({int(a) for a in angles})
    if not out or out[0] < 1 or out[-1] > CARVANA_ANGLES:
        raise ValueError(f"angles: numbers in 1..{CARVANA_ANGLES}, got {list(angles)}")
    return out


def _car(rng: np.random.Generator, colour: np.ndarray, angle: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """One studio photo of a car seen from angle 1..16: (RGB uint8 [H, W, 3], mask uint8 [H, W]).

    Drawn straight into uint8 with OpenCV (fast at 1280x1918): light grey backdrop, darker floor, a soft
    shadow under the car (dark, not car), the body in the car's paint, dark windows and wheels (car).
    """
    theta = 2 * np.pi * (angle - 1) / CARVANA_ANGLES
    side = abs(np.sin(theta))  # 1 seen from the side (long), 0 from the front / back (short)
    column = np.clip(235 - 25 * np.linspace(0, 1, h), 0, 255).astype(np.uint8)
    image = np.empty((h, w, 3), np.uint8)
    image[:] = column[:, None, None]
    floor = int(0.78 * h)
    image[floor:] -= 12
    half_len = int((0.18 + 0.2 * side) * w)
    cx, base = w // 2 + int(rng.integers(-w // 40, w // 40 + 1)), int(0.74 * h)
    body_h, cabin_h = int(0.16 * h), int(0.13 * h)
    cv2.ellipse(image, (cx, base + body_h // 3), (int(half_len * 1.05), int(0.04 * h)), 0, 0, 360, (120, 120, 120), -1)
    cabin = int(half_len * (0.55 + 0.1 * side))
    roof = base - body_h - cabin_h
    cabin_pts = np.array(
        [
            [cx - cabin, base - body_h],
            [cx - int(cabin * 0.7), roof],
            [cx + int(cabin * 0.7), roof],
            [cx + cabin, base - body_h],
        ],
        np.int32,
    )
    top = roof + int(0.02 * h)
    glass = np.array(
        [
            [cx - int(cabin * 0.85), base - body_h - 4],
            [cx - int(cabin * 0.62), top],
            [cx + int(cabin * 0.62), top],
            [cx + int(cabin * 0.85), base - body_h - 4],
        ],
        np.int32,
    )
    r = int(0.055 * h)
    wheels = [(cx + int(dx * half_len), base) for dx in ((-0.7, 0.7) if side > 0.3 else (-0.8, 0.8))]
    paint = tuple(int(v) for v in colour)
    mask = np.zeros((h, w), np.uint8)
    for target, value in ((image, paint), (mask, 1)):
        cv2.rectangle(target, (cx - half_len, base - body_h), (cx + half_len, base), value, -1)
        cv2.fillPoly(target, [cabin_pts], value)
        for centre in wheels:
            cv2.circle(target, centre, r, value, -1)
    cv2.fillPoly(image, [glass], (45, 55, 70))
    for centre in wheels:
        cv2.circle(image, centre, r, (25, 25, 25), -1)
    noise = np.clip(10 + 4 * smooth_noise(rng, h, w, 32), 0, 255).astype(np.uint8)
    image = cv2.subtract(cv2.add(image, cv2.merge([noise, noise, noise])), (10, 10, 10, 0))
    return image, mask


def write_carvana(
    root: str | Path,
    seed: int = 0,
    n_train: int = 3,
    n_test: int = 1,
    angles: int | Sequence[int] = CARVANA_ANGLES,
    *,
    encode: Encoder,
) -> Path:
    """Carvana: ``train/<12 hex>_<01..16>.jpg`` 1918x1280 (W x H) RGB, ``n_train`` / ``n_test`` *cars*.

    Masks as ``train_masks/<id>_<angle>_mask.gif`` and ``train_masks.csv`` (``img,rle_mask``, every image),
    ``metadata.csv`` (id, year, make, model, trim1, trim2), ``test/``, ``sample_submission.csv``
    (``img,rle_mask`` at full size). ``angles`` < 16 keeps fewer views per car (faster tests).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    h, w = 1280, 1918
    train_cars, test_cars = train_test_ids(rng, n_train, n_test, 12)
    views = carvana_angles(angles)
    rows, test_files = [], []
    for split, split_cars in (("train", train_cars), ("test", test_cars)):
        for car in split_cars:
            colour = rng.uniform(20, 200, size=3).astype(np.float32)
            colour[int(rng.integers(3))] = rng.uniform(150, 230)  # saturated paint, never backdrop grey
            for a in views:
                name = f"{car}_{a:02d}"
                image, mask = _car(rng, colour, a, h, w)
                write_image(root / split / f"{name}.jpg", image, quality=90)
                if split == "train":
                    write_gif_mask(root / "train_masks" / f"{name}_mask.gif", mask)
                    rows.append((f"{name}.jpg", encode(mask)))
                else:
                    test_files.append(f"{name}.jpg")
    write_csv(root / "train_masks.csv", pd.DataFrame(rows, columns=["img", "rle_mask"]))
    write_csv(root / "sample_submission.csv", sample_rows(test_files, ["img", "rle_mask"], "1 1"))
    makes = [("Acura", "MDX"), ("Audi", "A4"), ("BMW", "3 Series"), ("Chevrolet", "Tahoe"), ("Ford", "F-150")]
    meta = [
        (car, 2010 + int(rng.integers(0, 8)), *makes[int(rng.integers(len(makes)))], "Base", "")
        for car in sorted(train_cars + test_cars)
    ]
    write_csv(root / "metadata.csv", pd.DataFrame(meta, columns=["id", "year", "make", "model", "trim1", "trim2"]))
    return root
