"""Whole-slide TIFFs read by window, never whole: tifffile's zarr store over the first series' full level.

The one place the odd layouts of real slides are normalised (HuBMAP "Hacking the Kidney" shipped every one
of them): ``YXS`` (H, W, 3), channels first ``SYX`` / ``CYX`` (3, H, W), leading axes of size 1
(``QQSYX`` = (1, 1, 3, H, W)), pyramids (only level 0 is read) and channels as separate pages (three
``YX`` pages, or three single-page series). Gray slides are replicated to RGB and an alpha channel is
dropped. Windows come back as uint8/uint16 [h, w, 3] with everything outside the slide zero.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["SlideLayoutError", "Slide", "open_slide", "read_scaled", "slide_size"]

_CHANNEL_AXES = "SC"  # tifffile's names of a sample / channel axis
_BANDS = (1, 3, 4)  # gray, RGB, RGBA


class SlideLayoutError(ValueError):
    """A TIFF whose axes cannot be read as one RGB (or gray) plane."""


@dataclass(frozen=True)
class _Layout:
    """Where Y, X and the channels sit in the stored arrays: index per stored axis, or a slice."""

    planes: int  # number of zarr arrays holding the channels (1, or 3 when channels are separate pages)
    y: int  # position of Y among the stored axes
    x: int
    channel: int | None  # position of the channel axis (None: gray or separate pages)
    ndim: int


def _layout(path: Path, axes: str, shape: tuple[int, ...], planes: int) -> _Layout:
    """Find Y, X and channel positions; every other axis must have size 1."""
    if "Y" not in axes or "X" not in axes:
        raise SlideLayoutError(f"{path}: TIFF axes {axes!r} shape {shape} have no Y and X axes")
    y, x = axes.index("Y"), axes.index("X")
    rest = [i for i in range(len(axes)) if i not in (y, x)]
    channel = next((i for i in rest if axes[i] in _CHANNEL_AXES), None)
    if channel is None:  # tifffile names separate pages I / Q: take a 3- or 4-long one as the channels
        channel = next((i for i in rest if shape[i] in (3, 4)), None)
    extra = [i for i in rest if i != channel and shape[i] != 1]
    if extra or (channel is not None and shape[channel] not in _BANDS) or (planes > 1 and channel is not None):
        raise SlideLayoutError(
            f"{path}: TIFF axes {axes!r} shape {shape}: expected one RGB or gray plane (H, W, 3), (3, H, W), "
            f"(1, 1, 3, H, W) or 3 pages of (H, W); extra axes of size > 1 are not supported"
        )
    return _Layout(planes, y, x, channel, len(axes))


class Slide:
    """An open TIFF slide: ``size`` (H, W), ``dtype`` and ``read(y0, x0, h, w)`` -> [h, w, 3].

    Use as a context manager (or call ``close``); the file handle is opened lazily again after pickling,
    so a ``Slide`` can be handed to DataLoader workers.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._arrays: list[Any] | None = None
        self._files: list[Any] = []
        self._open()

    def _open(self) -> None:
        import tifffile
        import zarr

        if not self.path.is_file():
            raise FileNotFoundError(f"slide not found: {self.path}")
        try:
            tif = tifffile.TiffFile(self.path)
        except (tifffile.TiffFileError, ValueError) as e:
            raise SlideLayoutError(f"{self.path}: not a readable TIFF: {e}") from e
        series = tif.series
        first = series[0]
        group = [first]
        same = [s for s in series[1:] if s.axes == first.axes and s.shape == first.shape]
        if first.axes == "YX" and len(same) + 1 in (3, 4):  # channels stored as separate single-page series
            group = [first, *same][:3]
        arrays = [zarr.open(s.aszarr(level=0), mode="r") for s in group]
        self._files, self._arrays = [tif], arrays
        self.layout = _layout(self.path, first.axes, tuple(first.shape), len(arrays))
        shape = arrays[0].shape
        self.size = (int(shape[self.layout.y]), int(shape[self.layout.x]))
        self.dtype = np.dtype(arrays[0].dtype)
        if self.dtype not in (np.uint8, np.uint16):
            raise SlideLayoutError(f"{self.path}: pixel dtype {self.dtype}, expected uint8 or uint16")

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._arrays, self._files = None, []
        self._open()

    def close(self) -> None:
        for f in self._files:
            f.close()
        self._files, self._arrays = [], None

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _plane(self, array: Any, ys: slice, xs: slice) -> np.ndarray:
        """[h, w] or [h, w, c] of one stored array."""
        lay = self.layout
        index: list[Any] = [0] * lay.ndim
        index[lay.y], index[lay.x] = ys, xs
        if lay.channel is not None:
            index[lay.channel] = slice(None)
        block = np.asarray(array[tuple(index)])
        kept = sorted([lay.y, lay.x] + ([lay.channel] if lay.channel is not None else []))
        order = [kept.index(lay.y), kept.index(lay.x)] + ([kept.index(lay.channel)] if lay.channel is not None else [])
        return block.transpose(order)

    def read(self, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        """Pixels [h, w, 3] of the window at (y0, x0) in the slide's dtype; outside the slide is 0."""
        if self._arrays is None:
            self._open()
        assert self._arrays is not None
        out = np.zeros((h, w, 3), dtype=self.dtype)
        H, W = self.size  # noqa: N806
        ya, yb, xa, xb = max(y0, 0), min(y0 + h, H), max(x0, 0), min(x0 + w, W)
        if ya >= yb or xa >= xb:
            return out
        ys, xs = slice(ya, yb), slice(xa, xb)
        planes = [self._plane(a, ys, xs) for a in self._arrays]
        block = np.stack(planes, axis=-1) if len(planes) > 1 else planes[0]
        if block.ndim == 2:
            block = block[..., None]
        if block.shape[-1] == 1:
            block = np.repeat(block, 3, axis=-1)
        out[ya - y0 : yb - y0, xa - x0 : xb - x0] = block[..., :3]
        return out


def read_scaled(slide: Slide, y0: int, x0: int, span: int, size: int) -> np.ndarray:
    """float32 [size, size, 3] in [0, 1]: the window of ``span`` pixels at (y0, x0), area-downscaled to ``size``."""
    import cv2

    pixels = slide.read(y0, x0, span, span)
    image = pixels.astype(np.float32) / np.float32(255.0 if pixels.dtype == np.uint8 else 65535.0)
    if size != span:
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return image


def open_slide(path: str | os.PathLike[str]) -> Slide:
    """Open a TIFF slide for windowed reading (see :class:`Slide`)."""
    return Slide(path)


def slide_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(H, W) of a slide from its TIFF header (no pixel is read)."""
    with Slide(path) as slide:
        return slide.size
