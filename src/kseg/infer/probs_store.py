"""``kseg predict --save-probs DIR``: uint8 test probabilities kept for later blending.

Layout of ``DIR``:

- ``<image_id>.npy``: uint8 [C, H, W] = ``kseg.postprocess.quantize`` of the ensemble probabilities at the
  submission size, before post-processing (the OOF store's format, so blends tune/compare identically);
- ``ids.csv`` (written last, atomically: its presence means the folder is complete): columns
  ``image_id, file, height, width`` then ``aux_<class>`` (aux-head probabilities, float) when the
  models have an aux head. Rows in prediction order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from kseg.atomic import atomic_write_bytes, atomic_write_text

IDS_FILE = "ids.csv"


class ProbsWriter:
    """Write one ``.npy`` per image as predictions stream by; ``close`` writes ``ids.csv``."""

    def __init__(self, folder: str | Path, classes: Sequence[str]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.classes = list(classes)
        self.rows: list[dict[str, object]] = []  # a few numbers per image

    def add(self, image_id: str, q: np.ndarray, aux: np.ndarray | None = None) -> Path:
        """Store uint8 q [C, H, W] of ``image_id`` (+ aux probabilities float [C])."""
        if q.dtype != np.uint8 or q.ndim != 3 or q.shape[0] != len(self.classes):
            raise ValueError(f"{image_id}: expected uint8 [{len(self.classes)}, H, W], got {q.dtype} {q.shape}")
        name = f"{image_id}.npy"
        path = self.folder / name
        atomic_write_bytes(path, lambda f: np.save(f, np.ascontiguousarray(q)))
        row: dict[str, object] = {"image_id": image_id, "file": name, "height": q.shape[1], "width": q.shape[2]}
        if aux is not None:
            row.update({f"aux_{c}": float(a) for c, a in zip(self.classes, np.asarray(aux).reshape(-1), strict=True)})
        self.rows.append(row)
        return path

    def close(self) -> Path:
        path = self.folder / IDS_FILE
        atomic_write_text(path, pd.DataFrame(self.rows).to_csv(index=False))
        return path


def read_probs(folder: str | Path, mmap: bool = True) -> Iterator[tuple[str, np.ndarray, np.ndarray | None]]:
    """(image_id, uint8 [C, H, W], aux float [C] | None) for every image of a ``--save-probs`` folder."""
    folder = Path(folder)
    ids_path = folder / IDS_FILE
    if not ids_path.is_file():
        raise FileNotFoundError(f"{ids_path} not found: not a complete --save-probs folder")
    table = pd.read_csv(ids_path, dtype={"image_id": str, "file": str}, keep_default_na=False)
    aux_cols = [c for c in table.columns if c.startswith("aux_")]
    for row in table.to_dict("records"):
        q = np.load(folder / str(row["file"]), mmap_mode="r" if mmap else None)
        aux = np.array([row[c] for c in aux_cols], dtype=np.float32) if aux_cols else None
        yield str(row["image_id"]), q, aux
