"""The synthetic demo competition (``kseg demo``, the tests' ``demo_root``).

``make_demo`` writes a Severstal-like competition: grey steel texture, 4 defect classes of different
shapes and sizes (pits, scratches, stains, holes), about half the images without any defect, a
long-format ``train.csv`` with only non-empty rows, test images and a ``sample_submission.csv`` with one
row per image x class, exactly as Severstal shipped it.

``make_sample`` draws one such image and its masks (the Severstal miniature uses it too); the miniatures of
real competitions are in ``kseg.demo.registry``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from kseg.atomic import atomic_write_text
from kseg.data.rle import KAGGLE

log = logging.getLogger(__name__)

DEMO_CLASSES = ("pits", "scratches", "stains", "holes")


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Grey steel-like background [H, W] float32 in [0, 255]: horizontal streaks + noise."""
    rows = rng.normal(0, 6, size=(h, 1)).astype(np.float32)
    cols = cv2.GaussianBlur(rng.normal(0, 10, size=(1, w)).astype(np.float32), (1, 31), 0)
    base = 110 + rng.uniform(-15, 15) + rows + cols
    return base + rng.normal(0, 5, size=(h, w)).astype(np.float32)


def _draw_defect(rng: np.random.Generator, cls: int, h: int, w: int) -> np.ndarray:
    """uint8 [H, W] mask of one defect of class ``cls`` (0..3); shapes and sizes differ per class."""
    m = np.zeros((h, w), dtype=np.uint8)
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    s = min(h, w)
    if cls == 0:  # pits: a cluster of small dots
        for _ in range(int(rng.integers(3, 8))):
            y, x = cy + int(rng.integers(-s // 8, s // 8)), cx + int(rng.integers(-s // 8, s // 8))
            cv2.circle(m, (x, y), int(rng.integers(1, max(2, s // 40) + 1)), 1, -1)
    elif cls == 1:  # scratches: long thin lines
        ang = rng.uniform(-0.4, 0.4)
        length = rng.uniform(0.3, 0.8) * w
        dx, dy = np.cos(ang) * length / 2, np.sin(ang) * length / 2
        cv2.line(m, (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)), 1, int(rng.integers(2, 4)))
    elif cls == 2:  # stains: large soft ellipses
        axes = (int(rng.uniform(0.15, 0.35) * w), int(rng.uniform(0.15, 0.4) * h))
        cv2.ellipse(m, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    else:  # holes: medium rectangles
        hh, ww = int(rng.uniform(0.08, 0.2) * h), int(rng.uniform(0.05, 0.12) * w)
        m[max(0, cy - hh) : cy + hh, max(0, cx - ww) : cx + ww] = 1
    return m


_SHADE = np.array([-70.0, 80.0, -45.0, 100.0], dtype=np.float32)  # brightness change per class


def make_sample(
    rng: np.random.Generator, h: int, w: int, p_empty: float = 0.5, classes: tuple[int, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic image uint8 [H, W, 3] (BGR) and its masks uint8 [4, H, W].

    ``classes`` (0..3) forces those defect classes instead of the random choice (empty when ``()``).
    """
    gray = _texture(rng, h, w)
    masks = np.zeros((4, h, w), dtype=np.uint8)
    if classes is None and rng.random() >= p_empty:
        classes = tuple(int(c) for c in rng.choice(4, size=int(rng.integers(1, 3)), replace=False))
    for cls in classes or ():
        masks[cls] |= _draw_defect(rng, int(cls), h, w)
    for cls in range(4):  # later classes paint over earlier ones, as one pixel has one defect
        soft = cv2.GaussianBlur(masks[cls].astype(np.float32), (3, 3), 0)
        gray = gray + _SHADE[cls] * soft
    gray = np.clip(gray, 0, 255).astype(np.uint8)
    tint = np.stack([gray, gray, np.clip(gray.astype(np.int16) + 6, 0, 255).astype(np.uint8)], axis=-1)
    return tint, masks


def make_demo(
    root: str | Path,
    seed: int = 0,
    n_train: int = 48,
    n_test: int = 16,
    size: tuple[int, int] = (128, 256),
    p_empty: float = 0.5,
    encode: Callable[[np.ndarray], str] = KAGGLE.encode,
) -> Path:
    """Write the synthetic Severstal-like competition to ``root`` (layout of configs/competitions/demo.yaml).

    ``encode`` writes the csv masks (the demo spec's dialect is the common Kaggle one).

    Deterministic for a seed. Also writes ``test_truth.csv`` (same format as train.csv) so the demo
    can report a held-out test score. Returns ``root``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    h, w = size
    rows: dict[str, list[dict[str, object]]] = {"train": [], "test": []}
    for split, n in (("train", n_train), ("test", n_test)):
        folder = root / f"{split}_images"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image_id = f"{split[:2]}{seed:02d}{i:05d}.jpg"
            image, masks = make_sample(rng, h, w, p_empty)
            if not cv2.imwrite(str(folder / image_id), image, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise OSError(f"could not write {folder / image_id}")
            for c in range(4):
                if masks[c].any():
                    rows[split].append({"ImageId": image_id, "ClassId": c + 1, "EncodedPixels": encode(masks[c])})
    cols = ["ImageId", "ClassId", "EncodedPixels"]
    atomic_write_text(root / "train.csv", pd.DataFrame(rows["train"], columns=cols).to_csv(index=False))
    atomic_write_text(root / "test_truth.csv", pd.DataFrame(rows["test"], columns=cols).to_csv(index=False))
    test_ids = sorted(p.name for p in (root / "test_images").iterdir())
    sample = pd.DataFrame([{"ImageId": i, "EncodedPixels": "1 1", "ClassId": c} for i in test_ids for c in range(1, 5)])
    atomic_write_text(root / "sample_submission.csv", sample.to_csv(index=False))
    log.info("wrote synthetic competition to %s (%d train, %d test images)", root, n_train, n_test)
    return root
