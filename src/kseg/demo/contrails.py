"""Google Research Identify Contrails miniature: per record 9 infrared bands x 8 frames as ``.npy`` arrays."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from kseg.demo.common import Encoder, smooth_noise, write_csv

BANDS = tuple(range(8, 17))  # GOES-16 ABI bands 08..16
N_TIMES_BEFORE, N_TIMES_AFTER = 4, 3  # T = 8 frames, the labelled one is index 4
_BAND_OFFSET = {8: -40.0, 9: -32.0, 10: -22.0, 11: -2.0, 12: -18.0, 13: 1.0, 14: 0.0, 15: -1.5, 16: -9.0}  # vs 14


def _record_ids(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct 19-digit record ids (as the real ``1000834164244036115``), sorted."""
    out: set[str] = set()
    while len(out) < n:
        out.update(str(int(v)) for v in rng.integers(10**18, 9 * 10**18, size=n - len(out), dtype=np.int64))
    return sorted(out)


def _contrails(rng: np.random.Generator, h: int, w: int, t: int, labellers: int) -> tuple[np.ndarray, np.ndarray]:
    """(contrail cover float32 [H, W, T] per frame, individual masks uint8 [H, W, 1, R] of the labelled frame).

    Each contrail is a thin line that appears at some frame and drifts with the wind; each labeller draws
    the labelled frame's lines 1 or 2 pixels wide and may miss a faint one.
    """
    cover = np.zeros((t, h, w), np.float32)
    labels = np.zeros((labellers, h, w), np.uint8)
    for _ in range(int(rng.integers(0, 4))):
        p0, d = rng.uniform(0, [w, h]), rng.uniform(-1, 1, 2)
        d = d / (np.linalg.norm(d) + 1e-6) * rng.uniform(0.4, 0.9) * w
        wind, born = rng.uniform(-0.8, 0.8, 2), int(rng.integers(0, N_TIMES_BEFORE + 1))
        for f in range(born, t):
            a = p0 + wind * (f - born)
            cv2.line(cover[f], tuple(int(v) for v in a), tuple(int(v) for v in a + d), 1.0, 2)
            if f == N_TIMES_BEFORE:
                for r in range(labellers):
                    if rng.random() < 0.9:
                        cv2.line(labels[r], tuple(int(v) for v in a), tuple(int(v) for v in a + d), 1, 1 + r % 2)
    return cover.transpose(1, 2, 0), labels.transpose(1, 2, 0)[:, :, None, :]


def _bands(rng: np.random.Generator, cover: np.ndarray) -> dict[int, np.ndarray]:
    """Brightness temperatures float32 [H, W, T] per band: a smooth scene, contrails colder in band 14 and
    with a larger band 15 - band 14 split-window difference (dark in the ash false colour)."""
    h, w, t = cover.shape
    scene = 275 + 10 * smooth_noise(rng, h, w, 16)[..., None] + 0.3 * np.arange(t, dtype=np.float32)
    b14 = scene - 9 * cover + 0.3 * rng.standard_normal((h, w, t), dtype=np.float32)
    out = {}
    for band in BANDS:
        extra = {15: 3.0, 11: 5.0}.get(band, 0.0) * cover  # band 15 warmer, band 11 warmer than 14
        out[band] = (b14 + _BAND_OFFSET[band] + extra).astype(np.float32)
    return out


def write_contrails(
    root: str | Path, seed: int = 0, n_train: int = 8, n_test: int = 2, size: int = 64, *, encode: Encoder
) -> Path:
    """Identify Contrails: ``{train,validation,test}/<record_id>/band_{08..16}.npy`` float32 [H, W, 8].

    Train records also hold ``human_pixel_masks.npy`` int32 [H, W, 1] (> half of the labellers) and
    ``human_individual_masks.npy`` int32 [H, W, 1, R]; validation records only the pixel masks; test records
    none. The labels are of frame ``n_times_before = 4``. ``sample_submission.csv`` =
    ``record_id,encoded_pixels`` (``1 1 5 1`` then ``-``, as the real one). ``size`` x ``size`` (real: 256).
    ``encode`` is unused: the labels ship as ``.npy`` masks, no training csv is run-length encoded.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    t = N_TIMES_BEFORE + N_TIMES_AFTER + 1
    n_val = max(1, n_train // 4)
    ids = _record_ids(rng, n_train + n_val + n_test)
    rng.shuffle(ids)
    splits = ["train"] * n_train + ["validation"] * n_val + ["test"] * n_test
    for k, (record, split) in enumerate(zip(ids, splits, strict=True)):
        labellers = int(rng.integers(4, 7))
        cover, individual = _contrails(rng, size, size, t, labellers)
        if k == 0:  # the first training record always has a contrail
            cover[size // 2, 4:-4, :] = 1.0
            individual[size // 2, 4:-4] = 1
        folder = root / split / record
        folder.mkdir(parents=True, exist_ok=True)
        for band, values in _bands(rng, cover).items():
            np.save(folder / f"band_{band:02d}.npy", values)
        if split != "test":
            votes = individual.sum(axis=3)
            np.save(folder / "human_pixel_masks.npy", (votes * 2 > labellers).astype(np.int32))
        if split == "train":
            np.save(folder / "human_individual_masks.npy", individual.astype(np.int32))
    test = [r for r, s in zip(ids, splits, strict=True) if s == "test"]
    placeholder = (["1 1 5 1"] + ["-"] * len(test))[: len(test)]
    write_csv(root / "sample_submission.csv", pd.DataFrame({"record_id": test, "encoded_pixels": placeholder}))
    return root
