"""Out-of-fold probability store: ``oof.npy`` uint8 (N, C, H, W) + ``oof_ids.csv``, streamed batch by batch.

Blocks go into a ``np.lib.format.open_memmap`` temp file next to the target, so memory stays bounded by
one batch; ``commit`` fsyncs and renames it into place (readers never see half an array). Under DDP each
rank writes its own part and rank 0 merges them (``merge_parts``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kseg.atomic import atomic_path, atomic_write_bytes, atomic_write_text, commit, temp_path
from kseg.layout import oof_paths


def to_uint8(probs: torch.Tensor) -> np.ndarray:
    """Probabilities in [0, 1] -> uint8 numpy (p x 255 rounded half to even, clamped)."""
    return probs.float().mul(255.0).round_().clamp_(0, 255).to(torch.uint8).cpu().numpy()


class OofWriter:
    """Streams uint8 blocks of shape (n, C, H, W) into a temp ``.npy`` next to ``path``."""

    def __init__(self, path: str | Path, shape: tuple[int, int, int, int]) -> None:
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.tmp = temp_path(self.path, suffix=".npy")
        self._arr: np.memmap | None = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=np.uint8, shape=self.shape)
        self.written = 0

    def write(self, start: int, block: np.ndarray) -> None:
        """Put ``block`` uint8 [b, C, H, W] at rows ``start:start+b``."""
        if self._arr is None:
            raise RuntimeError("OofWriter is closed")
        if block.dtype != np.uint8 or block.shape[1:] != self.shape[1:]:
            raise ValueError(f"OOF block {block.dtype} {block.shape[1:]} != uint8 {self.shape[1:]}")
        self._arr[start : start + len(block)] = block
        self.written += len(block)

    def close(self) -> Path:
        """Flush and release the memmap; returns the temp file."""
        if self._arr is not None:
            self._arr.flush()
            self._arr = None
        return self.tmp

    def commit(self, path: str | Path | None = None) -> Path:
        """Atomically move the finished array to ``path`` (default the constructor's)."""
        if self.written != self.shape[0]:
            raise RuntimeError(f"OOF: {self.written} of {self.shape[0]} rows written")
        target = Path(path) if path else self.path
        commit(self.close(), target)
        return target

    def discard(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


def merge_parts(parts: Sequence[tuple[str | Path, Sequence[int]]], path: str | Path, n: int, chunk: int = 64) -> None:
    """Merge rank parts (file, row positions) into one (n, C, H, W) ``.npy`` at ``path``, atomically."""
    parts = [(Path(p), list(idx)) for p, idx in parts if len(idx)]
    if sum(len(idx) for _, idx in parts) != n:
        raise ValueError(f"OOF parts hold {sum(len(i) for _, i in parts)} rows, expected {n}")
    first = np.load(parts[0][0], mmap_mode="r")
    with atomic_path(path, suffix=".npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, *first.shape[1:]))
        del first
        for p, idx in parts:
            src = np.load(p, mmap_mode="r")
            rows = np.asarray(idx)
            for s in range(0, len(rows), chunk):
                out[rows[s : s + chunk]] = src[s : s + chunk]
            del src
        out.flush()
        del out


def write_aux(path: str | Path, aux: np.ndarray) -> None:
    """Atomically save aux-head probabilities uint8 [N, C] (row i = image ``oof_ids.csv[i]``)."""
    if aux.dtype != np.uint8 or aux.ndim != 2:
        raise ValueError(f"{path}: aux OOF must be uint8 [N, C], got {aux.dtype} {aux.shape}")
    atomic_write_bytes(path, lambda f: np.save(f, np.ascontiguousarray(aux)))


def write_ids(path: str | Path, ids: Sequence[str]) -> None:
    """``oof_ids.csv``: one column ``image_id`` in OOF row order."""
    atomic_write_text(Path(path), pd.DataFrame({"image_id": list(ids)}).to_csv(index=False))


def read_oof(fold_dir: str | Path) -> tuple[np.ndarray, list[str]]:
    """(memmapped uint8 (N, C, H, W), image ids) of a fold directory."""
    fold_dir = Path(fold_dir)
    paths = oof_paths(fold_dir)
    arr = np.load(paths.probs, mmap_mode="r")
    ids = pd.read_csv(paths.ids, dtype=str, keep_default_na=False)["image_id"].tolist()
    if len(ids) != len(arr):
        raise ValueError(f"{fold_dir}: {paths.probs.name} has {len(arr)} rows but {paths.ids.name} has {len(ids)} ids")
    return arr, ids
