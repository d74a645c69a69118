"""Tiles of slides as dataset items, read on the fly by the loader workers (nothing is cut to disk).

Training (``train=True``): ``tile.per_slide`` items per slide and epoch; item ``(epoch, i)`` draws its
window from ``derive_seed(train.seed, epoch, i)`` (so the tiles, like the augmentations of
``kseg.train.data.EpochSeeded``, do not depend on workers, ranks or the resume point): with probability
``tile.mask_fraction`` centred on a random mask pixel (every foreground pixel equally likely) shifted by
up to ``tile.jitter`` of the window, else anywhere on the slide.

Validation / OOF / ``predict --oof``: the ids are tile ids ``<slide>@<y0>_<x0>`` (``kseg.tiling.tile_id``);
a slide id is expanded to the non-overlapping grid of its windows. Items are the model-size tile and its
mask; ``size`` is the window's (``tile.span``) so the OOF and the truth (:class:`TileTruth`) are at slide
resolution.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from kseg.config import Config
from kseg.data.dataset import SegDataset, build_augment, to_tensor_image
from kseg.data.rle_stream import MaskRuns, decode_window, mask_runs
from kseg.data.slides import Slide, read_scaled, slide_size
from kseg.tiling import TileConfig, owned_boxes, parse_tile_id, slide_ids, starts, tile_id
from kseg.train.seed import derive_seed

log = logging.getLogger(__name__)

__all__ = ["TileDataset", "TileTruth", "dataset_type", "expand_tile_ids", "grid_tile_ids", "sample_window"]


def dataset_type(cfg: Config) -> type:
    """The dataset class of a config: :class:`TileDataset` with ``tile.size > 0``, else ``SegDataset``."""
    return TileDataset if cfg.tile.enabled else SegDataset


def grid_tile_ids(slide: str, size: tuple[int, int], tile: TileConfig) -> list[str]:
    """Tile ids of the non-overlapping window grid of a slide of ``size`` (H, W)."""
    ys, xs = starts(size[0], tile.span, tile.span), starts(size[1], tile.span, tile.span)
    return [tile_id(slide, int(y), int(x)) for y in ys for x in xs]


def expand_tile_ids(cfg: Config, ids: Sequence[str], image_dir: Path) -> list[str]:
    """Tile ids of ``ids``: a slide id becomes its window grid (:func:`grid_tile_ids`), a tile id stays."""
    out: list[str] = []
    for i in map(str, ids):
        out += (
            [i]
            if parse_tile_id(i)
            else grid_tile_ids(i, slide_size(image_dir / cfg.competition.image_file(i)), cfg.tile)
        )
    return out


def sample_window(
    rng: np.random.Generator, size: tuple[int, int], runs: Sequence[MaskRuns], tile: TileConfig
) -> tuple[int, int]:
    """(y0, x0) of a training window: on a mask pixel (share ``tile.mask_fraction``) + jitter, else uniform."""
    span = tile.span
    high = (max(size[0] - span, 0), max(size[1] - span, 0))
    masked = [r for r in runs if r.area]
    if masked and rng.random() < tile.mask_fraction:
        r = masked[int(rng.integers(len(masked)))]
        lengths = np.cumsum(r.end - r.first)
        k = int(rng.integers(int(lengths[-1])))  # the k-th foreground pixel in pixel order
        j = int(np.searchsorted(lengths, k, side="right"))
        y, x = r.pixel(np.array([r.first[j] + k - (lengths[j] - (r.end[j] - r.first[j]))]))
        dy, dx = rng.uniform(-tile.jitter, tile.jitter, size=2) * span
        y0, x0 = int(y[0] - span // 2 + dy), int(x[0] - span // 2 + dx)
        return int(np.clip(y0, 0, high[0])), int(np.clip(x0, 0, high[1]))
    return int(rng.integers(high[0] + 1)), int(rng.integers(high[1] + 1))


class _Slides:
    """Sizes and parsed mask runs of the slides of a labels table (per process, parsed once)."""

    def __init__(self, cfg: Config, folder: Path, labels: pd.DataFrame | None) -> None:
        self.cfg, self.folder = cfg, folder
        self.rles = labels.drop_duplicates("image_id").set_index("image_id") if labels is not None else None

        self._sizes: dict[str, tuple[int, int]] = {}
        self._runs: dict[str, tuple[MaskRuns, ...]] = {}
        self._open: dict[str, Slide] = {}

    def __getstate__(self) -> dict[str, Any]:  # workers open their own handles
        return {**self.__dict__, "_open": {}}

    def path(self, slide: str) -> Path:
        return self.folder / self.cfg.competition.image_file(slide)

    def size(self, slide: str) -> tuple[int, int]:
        if slide not in self._sizes:
            self._sizes[slide] = slide_size(self.path(slide))
        return self._sizes[slide]

    def handle(self, slide: str) -> Slide:
        """The open slide (kept open for the life of this process's dataset copy)."""
        if slide not in self._open:
            self._open[slide] = Slide(self.path(slide))
        return self._open[slide]

    def runs(self, slide: str) -> tuple[MaskRuns, ...]:
        if slide not in self._runs:
            self._runs[slide] = self._parse(slide)
        return self._runs[slide]

    def _parse(self, slide: str) -> tuple[MaskRuns, ...]:
        spec = self.cfg.competition
        if self.rles is None or slide not in self.rles.index:
            raise ValueError(f"slide {slide!r} has no row in the training labels")
        row = self.rles.loc[slide]
        out = []
        for name in spec.classes:
            try:
                out.append(mask_runs(row[name], self.size(slide), spec.rle))
            except ValueError as e:
                raise ValueError(f"slide {slide!r} class {name}: mask does not fit the slide: {e}") from e
        return tuple(out)


class TileDataset(Dataset):
    """Tiles of slides (see the module docstring): the ``SegDataset`` interface with tiles as images."""

    keyed = True  # EpochSeeded passes (epoch, index): the tile is drawn from both

    def __init__(
        self,
        cfg: Config,
        image_ids: Sequence[str],
        labels: pd.DataFrame | None = None,
        train: bool = False,
        root: str | Path | None = None,
        image_dir: str | Path | None = None,
    ) -> None:
        self.cfg, self.tile, self.train = cfg, cfg.tile, train
        root = Path(root) if root is not None else cfg.data_root
        folder = Path(image_dir) if image_dir is not None else root / cfg.competition.train_images
        self.slides = _Slides(cfg, folder, labels)
        self.has_masks = labels is not None
        self.augment = build_augment(cfg) if train else None
        self.slide_ids = list(dict.fromkeys(slide_ids(image_ids)))
        for s in self.slide_ids:
            if not self.slides.path(s).is_file():
                raise FileNotFoundError(f"slide file missing: {self.slides.path(s)}")
        self.skipped: list[str] = []
        if train:
            self.ids = [f"{s}#{k}" for s in self.slide_ids for k in range(self.tile.per_slide)]
        else:
            self.ids = expand_tile_ids(cfg, image_ids, folder)

    def drop_unreadable(self) -> list[str]:
        """Slides are opened in ``__init__`` (a missing one raises): nothing to drop."""
        return []

    def __len__(self) -> int:
        return len(self.ids)

    def _window(self, key: tuple[int, int] | int) -> tuple[str, int, int]:
        epoch, idx = key if isinstance(key, tuple) else (0, key)
        if not self.train:
            parsed = parse_tile_id(self.ids[idx])
            assert parsed is not None
            return parsed
        slide = self.slide_ids[idx // self.tile.per_slide]
        rng = np.random.default_rng(derive_seed(self.cfg.train.seed, epoch, idx))
        runs = self.slides.runs(slide) if self.has_masks else ()
        return (slide, *sample_window(rng, self.slides.size(slide), runs, self.tile))

    def _mask(self, slide: str, y0: int, x0: int) -> np.ndarray:
        """uint8 [size, size, C] model-size mask of a window."""
        span, size = self.tile.span, self.tile.size
        masks = [decode_window(r, y0, x0, span, span) for r in self.slides.runs(slide)]
        mask = np.stack(masks, axis=-1)
        if self.tile.downscale > 1:
            small = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
            mask = (small.reshape(size, size, -1) >= 0.5).astype(np.uint8)
        return mask

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, Any]:
        slide, y0, x0 = self._window(key)
        idx = key[1] if isinstance(key, tuple) else key
        image = read_scaled(self.slides.handle(slide), y0, x0, self.tile.span, self.tile.size)
        span = self.tile.span
        item: dict[str, Any] = {"id": self.ids[idx], "size": torch.tensor((span, span), dtype=torch.long)}
        if self.has_masks:
            mask = self._mask(slide, y0, x0)
            if self.augment is not None:
                out = self.augment(image=image, mask=mask)
                image, mask = out["image"], out["mask"]
            item["mask"] = torch.from_numpy(np.ascontiguousarray(mask.transpose(2, 0, 1), dtype=np.uint8))
        elif self.augment is not None:
            image = self.augment(image=image)["image"]
        item["image"] = to_tensor_image(image)  # normalised on the device (kseg.data.pixels.model_input)
        return item


class TileTruth:
    """Ground truth of tile ids at the window size (``TruthTable`` with ``tile.size > 0``)."""

    def __init__(self, cfg: Config, rles: pd.DataFrame) -> None:
        labels = rles.reset_index().rename(columns={rles.index.name or "index": "image_id"})
        self.slides = _Slides(cfg, cfg.data_root / cfg.competition.train_images, labels)
        self.index = set(rles.index)
        self.span = cfg.tile.span

    def check(self, ids: Sequence[str], where: Path) -> None:
        """Raise naming the first tile id that is not a tile of a training slide."""
        for i in ids:
            parsed = parse_tile_id(str(i))
            if parsed is None or parsed[0] not in self.index:
                raise ValueError(f"OOF tile {i!r} is not a tile of a training slide of {where}")

    def boxes(self, ids: Sequence[str]) -> np.ndarray:
        """int64 [n, 4] (top, bottom, left, right): each tile's own pixels in its window (``owned_boxes``)."""
        parsed = [parse_tile_id(str(i)) for i in ids]
        for image_id, p in zip(ids, parsed, strict=True):
            if p is None:
                raise ValueError(f"{image_id!r} is not a tile id <slide>@<y0>_<x0>")
        origins = np.array([(p[1], p[2]) for p in parsed if p], dtype=np.int64)
        sizes = np.array([self.slides.size(p[0]) for p in parsed if p], dtype=np.int64)
        return owned_boxes(origins, sizes, self.span)

    def masks(self, ids: Sequence[str], size: tuple[int, int], classes: int) -> np.ndarray:
        """bool [B, C, H, W] truth of tile ids at ``size`` (the window: ``tile.span`` square)."""
        out = np.zeros((len(ids), classes, int(size[0]), int(size[1])), dtype=bool)
        for i, image_id in enumerate(ids):
            parsed = parse_tile_id(str(image_id))
            if parsed is None:
                raise ValueError(f"{image_id!r} is not a tile id <slide>@<y0>_<x0>")
            slide, y0, x0 = parsed
            for c, runs in enumerate(self.slides.runs(slide)):
                out[i, c] = decode_window(runs, y0, x0, int(size[0]), int(size[1])).view(bool)
        return out
