"""File helpers of the miniature writers: Kaggle-style ids, images, GIF masks, csvs, smooth noise."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from kseg.atomic import atomic_write_text

Encoder = Callable[[np.ndarray], str]
"""[H, W] mask -> RLE string in the competition's dialect (``spec.rle.encode``; tests pass a reference)."""


def unique_hex(rng: np.random.Generator, n: int, digits: int) -> list[str]:
    """``n`` distinct lower-case hex strings of ``digits`` digits (Kaggle-style image ids), sorted."""
    out: set[str] = set()
    while len(out) < n:
        draws = rng.integers(0, 16**digits, size=n - len(out), dtype=np.int64)
        out.update(f"{int(v):0{digits}x}" for v in draws)
    return sorted(out)


def train_test_ids(rng: np.random.Generator, n_train: int, n_test: int, digits: int) -> tuple[list[str], list[str]]:
    """(train ids, test ids), each sorted: ``n_train + n_test`` distinct hex ids shuffled, then split."""
    ids = unique_hex(rng, n_train + n_test, digits)
    rng.shuffle(ids)
    return sorted(ids[:n_train]), sorted(ids[n_train:])


def write_image(path: Path, image: np.ndarray, quality: int = 95) -> None:
    """Write uint8/uint16 [H, W] gray or [H, W, 3] RGB to ``path`` (format from its suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = image[..., ::-1] if image.ndim == 3 else image  # RGB -> BGR for OpenCV
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    if not cv2.imwrite(str(path), np.ascontiguousarray(pixels), params):
        raise OSError(f"could not write image {path}")


def write_gif_mask(path: Path, mask: np.ndarray) -> None:
    """Write a uint8 [H, W] 0/1 mask as a 2-colour palette GIF (index 0 black, 1 white), as Carvana's."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray((mask > 0).astype(np.uint8), mode="P")
    img.putpalette([0, 0, 0, 255, 255, 255])
    img.save(path, format="GIF")


def write_csv(path: Path, df: pd.DataFrame, line_end: str = "\n") -> None:
    """Atomically write ``df`` without index; empty strings stay empty cells."""
    atomic_write_text(path, df.to_csv(index=False, lineterminator=line_end))


def smooth_noise(rng: np.random.Generator, h: int, w: int, scale: int, sigma: float = 1.0) -> np.ndarray:
    """float32 [H, W] smooth noise (std about ``sigma``): normal noise at 1/``scale`` resolution, upsampled."""
    small = rng.standard_normal((max(1, h // scale), max(1, w // scale)), dtype=np.float32) * sigma
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 255).astype(np.uint8)


def sample_rows(ids: Sequence[str], columns: Sequence[str], rle: str) -> pd.DataFrame:
    """One-class sample submission: one row per image, RLE column set to ``rle``."""
    return pd.DataFrame({columns[0]: list(ids), columns[1]: rle})
