"""UW-Madison GI Tract miniature: MRI scans as 16-bit PNG slices, 3 organs, a long csv with every row."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from kseg.demo.common import Encoder, smooth_noise, write_csv, write_image

UW_CLASSES = ("large_bowel", "small_bowel", "stomach")
UW_SIZES = ((266, 266, "1.50"), (234, 234, "1.50"), (310, 360, "1.50"), (276, 276, "1.63"))  # H, W, pixel spacing
_ORGAN_LEVEL = np.array([900.0, 1400.0, 2100.0], dtype=np.float32)  # large bowel, small bowel, stomach


def _organs(rng: np.random.Generator, h: int, w: int, n: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Ellipsoid organs of one scan: (class, centre (z, y, x), radii (z, y, x)), in slices and pixels."""
    out = []
    for cls in range(3):
        for _ in range(int(rng.integers(1, 3))):
            centre = np.array([rng.uniform(0.2, 0.8) * n, rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w])
            radii = np.array([rng.uniform(0.2, 0.45) * n, rng.uniform(0.06, 0.16) * h, rng.uniform(0.06, 0.16) * w])
            out.append((cls, centre, radii))
    return out


def _slice(organs: list, k: int, h: int, w: int) -> np.ndarray:
    """uint8 [3, H, W] masks of slice ``k``: each ellipsoid's cross-section (organs may touch and overlap)."""
    masks = np.zeros((3, h, w), np.uint8)
    for cls, (cz, cy, cx), (rz, ry, rx) in organs:
        t = 1 - ((k - cz) / rz) ** 2
        if t > 0:
            axes = (max(1, int(rx * np.sqrt(t))), max(1, int(ry * np.sqrt(t))))
            cv2.ellipse(masks[cls], (int(cx), int(cy)), axes, 0, 0, 360, 1, -1)
    return masks


def _scan(rng: np.random.Generator, h: int, w: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """One MRI scan: (uint16 slices [n, H, W], uint8 masks [n, 3, H, W]); a dark body outline, organs inside."""
    organs = _organs(rng, h, w, n)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    body = (((yy - h / 2) / (0.42 * h)) ** 2 + ((xx - w / 2) / (0.46 * w)) ** 2 <= 1).astype(np.float32)
    images, masks = np.zeros((n, h, w), np.uint16), np.zeros((n, 3, h, w), np.uint8)
    for k in range(n):
        masks[k] = _slice(organs, k + 1, h, w)
        level = 300 + 350 * body + 60 * smooth_noise(rng, h, w, 16) * body
        for cls in range(3):  # stomach drawn last: brightest
            level = np.where(masks[k, cls] > 0, _ORGAN_LEVEL[cls], level)
        level = level + 40 * rng.standard_normal((h, w), dtype=np.float32)
        images[k] = np.clip(level, 0, 65535).astype(np.uint16)
    return images, masks


def _plan(n_train: int, n_test: int) -> list[tuple[int, int, str]]:
    """(patient, day, split) of every scan, as the real split: patient 1's first day is in train and its
    later day in test (split by time); then patients of 2 days in train, whole patients in test (split by case)."""
    plan = [(1, 0, "train")] + ([(1, 13, "test")] if n_test else [])
    plan += [(2 + j // 2, (0, 20)[j % 2], "train") for j in range(n_train - 1)]
    first = max(p for p, _, _ in plan) + 1
    plan += [(first + j, 0, "test") for j in range(n_test - 1)]
    return plan


def write_uwmgi(
    root: str | Path, seed: int = 0, n_train: int = 5, n_test: int = 2, slices: int = 10, *, encode: Encoder
) -> Path:
    """UW-Madison GI Tract: ``n_train`` / ``n_test`` scans (case-days) of ``slices`` slices each.

    Files ``{train,test}/case<N>/case<N>_day<M>/scans/slice_<kkkk>_<W>_<H>_<spacing>_<spacing>.png``
    (16-bit gray, each scan one of 266x266, 234x234, 360x310 (W x H), 276x276; spacing 1.50 or 1.63 mm).
    ``train.csv`` = ``id,class,segmentation`` with all 3 rows per slice (large_bowel, small_bowel, stomach;
    empty cell when the organ is absent), ``id = case<N>_day<M>_slice_<kkkk>``, RLEs row-major.
    ``sample_submission.csv`` = ``id,class,predicted``, 3 rows per test slice (as the hidden test set's).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    plan = _plan(n_train, n_test)
    numbers = rng.choice(np.arange(2, 160), size=max(p for p, _, _ in plan) + 1, replace=False)
    rows: dict[str, list[tuple[str, str, str]]] = {"train": [], "test": []}
    for i, (patient, day, split) in enumerate(plan):
        h, w, spacing = UW_SIZES[i % len(UW_SIZES)]
        case = f"case{int(numbers[patient])}"
        images, masks = _scan(rng, h, w, slices)
        folder = root / split / case / f"{case}_day{day}" / "scans"
        for k in range(slices):
            write_image(folder / f"slice_{k + 1:04d}_{w}_{h}_{spacing}_{spacing}.png", images[k])
            image_id = f"{case}_day{day}_slice_{k + 1:04d}"
            for c, name in enumerate(UW_CLASSES):
                rows[split].append((image_id, name, encode(masks[k, c]) if split == "train" else ""))
    write_csv(root / "train.csv", pd.DataFrame(rows["train"], columns=["id", "class", "segmentation"]))
    write_csv(root / "sample_submission.csv", pd.DataFrame(rows["test"], columns=["id", "class", "predicted"]))
    return root
