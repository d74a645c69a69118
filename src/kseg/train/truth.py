"""Ground truth and predictions at the competition's submission size, where the metric is computed.

Truth masks are decoded from the training RLEs at each image's native size, then resized to the
submission size when the two differ (Clouds: 1400x2100 labels, 350x525 submissions) with
``geometry.resize_masks``: centre-aligned, like the predictions ``restore`` brings to that size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from kseg.config import Config
from kseg.data.dataset import decode_masks
from kseg.data.rle import KAGGLE, RleDialect
from kseg.data.geometry import resize_masks, restore, submission_size


def truth_masks(
    rles: Sequence[str], native: tuple[int, int], size: tuple[int, int], image_id: str = "",
    dialect: RleDialect = KAGGLE, exclusive: bool = False,
) -> np.ndarray:
    """RLE per class (at ``native`` (H, W)) -> uint8 [C, H, W] at ``size`` (``resize_masks``, one-hot if exclusive)."""
    masks = decode_masks(list(rles), native, image_id, dialect)  # [H, W, C]
    masks = resize_masks(masks, size, exclusive=exclusive)
    if masks.ndim == 2:
        masks = masks[..., None]
    return np.ascontiguousarray(masks.transpose(2, 0, 1))


class TruthTable:
    """Truth masks of a labels table by image id, at the submission size."""

    def __init__(self, cfg: Config, labels: pd.DataFrame) -> None:
        self.cfg = cfg
        table = labels.drop_duplicates("image_id").set_index("image_id")
        self.rles = table[list(cfg.competition.classes)]

    def batch(self, ids: Sequence[str], natives: Sequence[tuple[int, int]], size: tuple[int, int]) -> np.ndarray:
        """uint8 [B, C, H, W] at ``size`` for images ``ids`` of native sizes ``natives``."""
        rows = self.rles.loc[list(ids)].to_numpy(dtype=object)
        dialect = self.cfg.competition.rle
        ex = self.cfg.competition.exclusive
        return np.stack([truth_masks(r, n, size, i, dialect, ex) for r, n, i in zip(rows, natives, ids)])


def restore_batch(
    probs: torch.Tensor, natives: Sequence[tuple[int, int]], cfg: Config, ids: Sequence[str] = ()
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Model-size probs [B,C,h,w] -> ([B,C,H,W] at the submission size, (H, W)).

    All images of the batch must share one submission size (it is fixed whenever
    ``competition.submission_size`` is set); otherwise the error names the first image that differs.
    """
    sizes = [submission_size(cfg, n) for n in natives]
    for i, s in enumerate(sizes):
        if s != sizes[0]:
            name = ids[i] if ids else f"#{i}"
            raise ValueError(
                f"image {name}: submission size {s} differs from {sizes[0]} in the same batch; "
                "set competition.submission_size so every OOF prediction has one shape"
            )
    if len(set(natives)) == 1:
        return restore(probs, sizes[0], cfg, native_size=natives[0]), sizes[0]
    out = [restore(probs[i : i + 1], sizes[0], cfg, native_size=n) for i, n in enumerate(natives)]
    return torch.cat(out), sizes[0]
