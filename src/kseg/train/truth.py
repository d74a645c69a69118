"""Ground truth and predictions at the competition's submission size, where the metric is computed.

Truth masks (``TruthTable``, used by training validation and by tuning) are decoded from the training RLEs
in the competition's dialect at each image's native size, then resized to the submission size when the two
differ (Clouds: 1400x2100 labels, 350x525 submissions) with ``geometry.resize_masks``: centre-aligned, like
the predictions ``restore`` brings to that size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from kseg.config import Config
from kseg.data.dataset import decode_masks, read_labels
from kseg.data.geometry import oof_size, resize_masks, restore
from kseg.data.inputs import ImagePaths, input_size
from kseg.data.rle import KAGGLE, RleDialect
from kseg.data.tiles import TileTruth


def truth_masks(
    rles: Sequence[str],
    native: tuple[int, int],
    size: tuple[int, int],
    image_id: str = "",
    dialect: RleDialect = KAGGLE,
    exclusive: bool = False,
) -> np.ndarray:
    """RLE per class (at ``native`` (H, W)) -> uint8 [C, H, W] at ``size`` (``resize_masks``, one-hot if exclusive)."""
    masks = decode_masks(list(rles), native, image_id, dialect)  # [H, W, C]
    masks = resize_masks(masks, size, exclusive=exclusive)
    if masks.ndim == 2:
        masks = masks[..., None]
    return np.ascontiguousarray(masks.transpose(2, 0, 1))


class TruthTable:
    """Ground truth of a labels table at the submission (= OOF) size, where the metric is computed.

    The one place kseg builds it: training validation (``train.loop``) and tuning (``tune.run``) both ask
    ``masks``. ``labels`` default to ``read_labels(cfg)``; an image listed twice keeps its first row.
    """

    def __init__(self, cfg: Config, labels: pd.DataFrame | None = None) -> None:
        self.cfg = cfg
        labels = read_labels(cfg) if labels is None else labels
        table = labels.drop_duplicates("image_id").set_index("image_id")
        self.rles = table[list(cfg.competition.classes)]
        self._paths = ImagePaths(cfg.competition, cfg.data_root / cfg.competition.train_images)
        self.tiles = TileTruth(cfg, self.rles) if cfg.tile.enabled else None  # OOF of tile ids (kseg.data.tiles)

    def check(self, ids: Sequence[str]) -> None:
        """Raise naming the first of ``ids`` (OOF images) without a row in the training labels."""
        where = self.cfg.data_root / self.cfg.competition.train_csv
        if self.tiles is not None:
            return self.tiles.check(ids, where)
        missing = pd.Index(ids).difference(self.rles.index)
        if len(missing):
            raise ValueError(f"OOF image {missing[0]!r} is not a training image of {where}")

    def boxes(self, ids: Sequence[str]) -> np.ndarray | None:
        """Tiles: int64 [n, 4] (top, bottom, left, right), the window pixels each tile holds alone in its slide's
        grid (``kseg.tiling.owned_boxes``: a slide's tiles partition it); None for whole images."""
        return None if self.tiles is None else self.tiles.boxes(ids)

    def native_size(self, image_id: str, size: tuple[int, int]) -> tuple[int, int]:
        """(H, W) the labels of ``image_id`` are encoded at, for masks wanted at ``size``."""
        spec = self.cfg.competition
        if spec.image_size:
            return int(spec.image_size[0]), int(spec.image_size[1])
        if not spec.submission_size and not spec.oof_size:
            return size  # OOF at each image's native size
        return input_size(spec, self._paths(image_id))

    def masks(
        self, ids: Sequence[str], size: tuple[int, int], natives: Sequence[tuple[int, int]] | None = None
    ) -> np.ndarray:
        """bool [B, C, H, W] truth of images ``ids`` at ``size`` (``truth_masks``: decode, centre-aligned resize).

        ``natives[i]`` is image i's native (H, W); without them ``native_size`` is asked, only for images
        that have a mask.
        """
        size = (int(size[0]), int(size[1]))
        spec = self.cfg.competition
        if self.tiles is not None:
            return self.tiles.masks(ids, size, spec.num_classes)
        rows = self.rles.loc[list(ids)].to_numpy(dtype=object)
        out = np.zeros((len(rows), len(spec.classes), *size), dtype=bool)
        for i, (image_id, rles) in enumerate(zip(ids, rows, strict=True)):
            if all(spec.rle.is_empty(r) for r in rles):
                continue
            native = natives[i] if natives is not None else self.native_size(image_id, size)
            out[i] = truth_masks(rles, native, size, image_id, spec.rle, spec.exclusive)
        return out


def restore_batch(
    probs: torch.Tensor, natives: Sequence[tuple[int, int]], cfg: Config, ids: Sequence[str] = ()
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Model-size probs [B,C,h,w] -> ([B,C,H,W] at the OOF size (``oof_size``), (H, W)).

    All images of the batch must share one OOF size (it is fixed whenever ``competition.oof_size`` or
    ``competition.submission_size`` is set); otherwise the error names the first image that differs.
    """
    sizes = [oof_size(cfg, n) for n in natives]
    for i, s in enumerate(sizes):
        if s != sizes[0]:
            name = ids[i] if ids else f"#{i}"
            raise ValueError(
                f"image {name}: submission size {s} differs from {sizes[0]} in the same batch; "
                "set competition.oof_size (or submission_size) so every OOF prediction has one shape"
            )
    if len(set(natives)) == 1:
        return restore(probs, sizes[0], cfg, native_size=natives[0]), sizes[0]
    out = [restore(probs[i : i + 1], sizes[0], cfg, native_size=n) for i, n in enumerate(natives)]
    return torch.cat(out), sizes[0]
