"""Sliding-window prediction of slides larger than memory, into a disk-backed canvas, out as streamed RLEs.

For each slide (``tile.size > 0``): windows of ``tile.span`` slide pixels on the grid of
``kseg.tiling.starts`` are read by DataLoader workers (``kseg.data.slides``), downscaled to ``tile.size``
(``cv2.INTER_AREA``) and predicted in batches by the fold ensemble with its TTA (``Ensemble.predict``,
every preprocessing group); probabilities are upscaled back to the window (bilinear), multiplied by the
blend window (``tile.window``) and added into a float32 ``[H, C, W]`` canvas file (``np.memmap`` views of
one tile row at a time, so resident memory is one band, not the slide). The weight sums are separable
(``kseg.tiling.weight_sums``): probabilities are ``canvas / (wy[y] * wx[x])``, read back in strips of
``tile.strip`` rows for ``kseg.infer.strips.encode_strips`` (post-processing + streaming RLE).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from kseg.config import Config
from kseg.data.pixels import model_input
from kseg.data.slides import Slide, SlideLayoutError, read_scaled
from kseg.infer.ensemble import Ensemble
from kseg.infer.strips import encode_strips
from kseg.postprocess import quantize
from kseg.tiling import TileConfig, starts, weight_sums, window_1d

log = logging.getLogger(__name__)

__all__ = ["Canvas", "WindowDataset", "predict_slide", "slide_rles", "to_model_input", "check_tiled_spec"]


class WindowDataset(Dataset):
    """Items {"image": float32 [3, size, size] in [0, 1], "y": int, "x": int} of a slide's window grid."""

    def __init__(self, path: Path, windows: Sequence[tuple[int, int]], tile: TileConfig) -> None:
        self.slide = Slide(path)
        self.windows = list(windows)
        self.tile = tile

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        y0, x0 = self.windows[i]
        image = read_scaled(self.slide, y0, x0, self.tile.span, self.tile.size)
        return {"image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), "y": y0, "x": x0}


def to_model_input(x: torch.Tensor, cfg: Config) -> torch.Tensor:
    """[N, K, h, w] float in [0, 1] -> the group's normalisation (``data.normalize``), as training sees it."""
    return model_input(x, cfg.data.normalize)


class Canvas:
    """Weighted sums of tile probabilities, float32 [H, C, W] in a file, and the separable weight sums.

    ``add(y0, x0, probs)`` adds one weighted window [C, span, span]; rows are written one tile row at a time
    (a new ``y0`` closes the previous band). ``read_probs`` / ``read_q`` give [C, h, W] of rows y0..y1.
    """

    def __init__(self, size: tuple[int, int], classes: int, tile: TileConfig) -> None:
        self.size, self.classes, self.tile = (int(size[0]), int(size[1])), int(classes), tile
        h, w = self.size
        self.grid_y, self.grid_x = starts(h, tile.span, tile.step), starts(w, tile.span, tile.step)
        window = window_1d(tile)
        self.window = np.outer(window, window).astype(np.float32)
        self.wy, self.wx = weight_sums(h, self.grid_y, window), weight_sums(w, self.grid_x, window)
        folder = tile.canvas_dir or None
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="kseg-canvas-", suffix=".f32", dir=folder)
        self.path = Path(name)
        with os.fdopen(fd, "wb") as f:
            f.truncate(h * classes * w * 4)  # sparse zeros: disk is used as the bands are written
        self._band: np.memmap | None = None
        self._band_y = -1

    def _view(self, y0: int, y1: int, mode: str) -> np.memmap:
        c, w = self.classes, self.size[1]
        return np.memmap(self.path, dtype=np.float32, mode=mode, offset=y0 * c * w * 4, shape=(y1 - y0, c, w))

    def add(self, y0: int, x0: int, probs: np.ndarray) -> None:
        """Add the weighted window probs float32 [C, span, span] (already times ``self.window``)."""
        h, w = self.size
        if y0 != self._band_y:
            self.flush()
            self._band, self._band_y = self._view(y0, min(y0 + self.tile.span, h), "r+"), y0
        band = self._band
        assert band is not None
        rows, cols = band.shape[0], min(x0 + self.tile.span, w) - x0
        band[:, :, x0 : x0 + cols] += probs[:, :rows, :cols].transpose(1, 0, 2)

    def flush(self) -> None:
        if self._band is not None:
            self._band.flush()
        self._band, self._band_y = None, -1

    def read_probs(self, y0: int, y1: int) -> np.ndarray:
        """Blended probabilities float32 [C, y1 - y0, W]."""
        self.flush()
        view = self._view(y0, y1, "r")
        weight = self.wy[y0:y1, None, None] * self.wx[None, None, :]
        probs = (view / weight).transpose(1, 0, 2)
        del view
        return np.ascontiguousarray(probs)

    def read_q(self, y0: int, y1: int) -> np.ndarray:
        """Quantized blended probabilities uint8 [C, y1 - y0, W] (``kseg.postprocess.quantize``)."""
        return quantize(np.clip(self.read_probs(y0, y1), 0.0, 1.0))

    def close(self) -> None:
        """Delete the canvas file."""
        self._band = None
        self.path.unlink(missing_ok=True)


def _blend(probs: torch.Tensor, canvas: Canvas) -> np.ndarray:
    """Model-size probs [N, C, size, size] -> weighted windows float32 [N, C, span, span] on the CPU."""
    span = canvas.tile.span
    if probs.shape[-1] != span:
        probs = F.interpolate(probs.float(), size=(span, span), mode="bilinear", align_corners=False)
    weight = torch.from_numpy(canvas.window).to(probs.device)
    return (probs.float().clamp(0.0, 1.0) * weight).cpu().numpy()


def predict_slide(ensemble: Ensemble, path: Path, num_workers: int | None = None, progress: bool = False) -> Canvas:
    """Sliding-window ensemble prediction of the slide at ``path`` into a new :class:`Canvas` (caller closes)."""
    cfg = ensemble.cfg
    tile = cfg.tile
    with Slide(path) as slide:
        size = slide.size
    canvas = Canvas(size, cfg.competition.num_classes, tile)
    windows = [(int(y), int(x)) for y in canvas.grid_y for x in canvas.grid_x]
    dataset = WindowDataset(path, windows, tile)
    workers = cfg.data.num_workers if num_workers is None else num_workers
    loader = DataLoader(dataset, batch_size=cfg.predict.batch_size, num_workers=workers, shuffle=False)
    try:
        for batch in tqdm(loader, desc=f"tiles {path.name}", unit="batch", disable=not progress):
            x = batch["image"]
            total: torch.Tensor | None = None
            for gi, g in enumerate(ensemble.groups):
                probs, _, _ = ensemble.predict(to_model_input(x, g.cfg), gi)
                total = probs if total is None else total + probs
            assert total is not None
            for i, blended in enumerate(_blend(total, canvas)):
                canvas.add(int(batch["y"][i]), int(batch["x"][i]), blended)
        canvas.flush()
    except BaseException:
        canvas.close()
        raise
    finally:
        dataset.slide.close()
    return canvas


def check_tiled_spec(cfg: Config) -> None:
    """Tiled prediction encodes at each slide's own size: refuse a fixed submission size."""
    if cfg.competition.submission_size is not None:
        raise ValueError(
            f"tile.size={cfg.tile.size}: competition.submission_size {cfg.competition.submission_size} is set, "
            "but tiled slides are encoded at their own size; unset one of them"
        )


@dataclass
class SlideResult:
    """RLE per class of one slide (``skipped``: unreadable under ``data.on_bad_image=skip``)."""

    image_id: str
    rles: list[str]
    skipped: bool = False


def slide_rles(
    ensemble: Ensemble, params: list[Any], ids: Sequence[str], image_dir: Path, progress: bool = True
) -> Iterator[SlideResult]:
    """Predict, post-process and RLE-encode each slide of ``ids`` (files in ``image_dir``), one at a time."""
    cfg = ensemble.cfg
    spec = cfg.competition
    check_tiled_spec(cfg)
    for image_id in tqdm(ids, desc="slides", unit="slide", disable=not progress):
        path = image_dir / spec.image_file(image_id)
        try:
            canvas = predict_slide(ensemble, path, progress=progress)
        except (SlideLayoutError, FileNotFoundError) as e:
            if cfg.data.on_bad_image != "skip":
                raise
            log.warning("skipping unreadable slide (data.on_bad_image=skip): %s", e)
            yield SlideResult(image_id, [""] * spec.num_classes, skipped=True)
            continue
        try:
            rles, areas = encode_strips(canvas.read_q, canvas.size, params, spec.rle, cfg.tile.strip, spec.exclusive)
        finally:
            canvas.close()
        log.info("slide %s %dx%d: mask areas %s", image_id, *canvas.size, areas)
        yield SlideResult(image_id, rles)
