"""TGS Salt Identification miniature: 101x101 seismic tiles, ``depths.csv``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kseg.demo.common import Encoder, sample_rows, smooth_noise, to_uint8, unique_hex, write_csv, write_image


def _seismic(rng: np.random.Generator, size: int, salt: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One 101x101 seismic slice: (gray uint8 [S, S], salt mask uint8 [S, S]); about 40% without salt.

    ``salt=True`` forces a salt body.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    warp = 4 * smooth_noise(rng, size, size, 25)
    layers = 128 + 45 * np.sin((yy + warp) / rng.uniform(2.5, 5.0) + rng.uniform(0, 6.3))
    mask = np.zeros((size, size), np.uint8)
    kind = rng.random()
    if salt:
        kind = 0.4 + 0.6 * kind
    if kind >= 0.4:  # salt body: below a smooth top boundary, or a dome
        if kind < 0.75:
            top = rng.uniform(-10, 80) + 15 * smooth_noise(rng, 1, size, 25)[0]
            mask[yy >= top[None, :].astype(np.float32)] = 1
        else:
            cy, cx = rng.uniform(30, 100), rng.uniform(0, size)
            ry, rx = rng.uniform(15, 50), rng.uniform(20, 60)
            mask[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = 1
    salt = 95 + 6 * rng.standard_normal((size, size), dtype=np.float32)  # flat, darker, chaotic
    gray = np.where(mask > 0, salt, layers) + 4 * rng.standard_normal((size, size), dtype=np.float32)
    return to_uint8(gray), mask


def write_tgs_salt(root: str | Path, seed: int = 0, n_train: int = 24, n_test: int = 8, *, encode: Encoder) -> Path:
    """TGS Salt: ``train/images/<10 hex>.png`` 101x101 (3-channel PNG of a gray image), ``train/masks/<id>.png``.

    Masks are 16-bit 0/65535 where non-empty and 8-bit zeros where empty, as in the real data; ``train.csv``
    = ``id,rle_mask`` (all images, empty cells for empty masks), ``depths.csv`` = ``id,z`` for train and test,
    ``test/images/``, ``sample_submission.csv`` = ``id,rle_mask`` with ``1 1``. Row orders are shuffled.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    ids = unique_hex(rng, n_train + n_test, 10)
    rng.shuffle(ids)
    train_ids, test_ids = ids[:n_train], ids[n_train:]
    rows = []
    for k, image_id in enumerate(train_ids):
        gray, mask = _seismic(rng, 101, salt=k == 0 or None)
        write_image(root / "train" / "images" / f"{image_id}.png", np.repeat(gray[..., None], 3, axis=2))
        stored = mask.astype(np.uint16) * 65535 if mask.any() else mask
        write_image(root / "train" / "masks" / f"{image_id}.png", stored)
        rows.append((image_id, encode(mask)))
    for image_id in test_ids:
        gray, _ = _seismic(rng, 101)
        write_image(root / "test" / "images" / f"{image_id}.png", np.repeat(gray[..., None], 3, axis=2))
    write_csv(root / "train.csv", pd.DataFrame(rows, columns=["id", "rle_mask"]))
    everyone = list(ids)
    rng.shuffle(everyone)
    depths = pd.DataFrame({"id": everyone, "z": rng.integers(51, 960, size=len(everyone))})
    write_csv(root / "depths.csv", depths)
    write_csv(root / "sample_submission.csv", sample_rows(test_ids, ["id", "rle_mask"], "1 1"))
    return root
