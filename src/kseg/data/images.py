"""Image and mask reading with OpenCV (PIL for GIF and as a fallback).

Files are read into memory once, checked for truncation (PNG without IEND, JPEG
without an end-of-image marker after its last scan, GIF without its trailer byte)
and decoded with ``cv2.imdecode``, which also works for non-ASCII paths.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import struct
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "ImageReadError",
    "draft_factor",
    "image_size",
    "read_image",
    "read_mask",
    "read_pixels",
    "read_pixels_draft",
    "unit_float",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"  # IEND chunk type + its fixed CRC
_JPEG_MAGIC = b"\xff\xd8\xff"
_JPEG_SOS = b"\xff\xda"  # start of scan; entropy-coded data never contains FF D9
_JPEG_EOI = b"\xff\xd9"
_GIF_MAGICS = (b"GIF87a", b"GIF89a")
_SCALES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


class ImageReadError(ValueError):
    """A file exists but is not a complete, decodable image."""


def _read_bytes(path: PathLike) -> tuple[Path, bytes]:
    """Read the whole file, raising FileNotFoundError / ImageReadError naming ``path``."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "image file not found", str(file)) from None
    except IsADirectoryError:
        raise ImageReadError(f"{file}: is a directory, not an image file") from None
    if not data:
        raise ImageReadError(f"{file}: file is empty (0 bytes)")
    return file, data


def _check_complete(file: Path, data: bytes) -> None:
    """Raise ImageReadError when a PNG, JPEG or GIF file is visibly truncated."""
    if data.startswith(_PNG_MAGIC) and data.rfind(_PNG_IEND) < 0:
        raise ImageReadError(f"{file}: truncated PNG (no IEND chunk, the file is cut short)")
    if data.startswith(_JPEG_MAGIC) and data.rfind(_JPEG_EOI) < data.rfind(_JPEG_SOS):
        raise ImageReadError(f"{file}: truncated JPEG (no end-of-image marker FFD9 after the last scan)")
    if data.startswith(_GIF_MAGICS) and not data.rstrip(b"\x00").endswith(b";"):
        raise ImageReadError(f"{file}: truncated GIF (no trailer byte 0x3B at the end)")


def _decode_pil(file: Path, data: bytes) -> np.ndarray | None:
    """Decode with PIL: [H, W] or [H, W, 3] RGB; None when PIL is missing or fails."""
    try:
        from PIL import Image
    except ImportError:
        return None
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.seek(0)  # first frame of animations
            if img.mode in ("L", "RGB", "F") or img.mode.startswith("I;16"):
                return np.array(img)
            return np.array(img.convert("RGB"))  # palette, alpha, CMYK, 1-bit, ...
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:  # PIL's errors for bad data
        logger.debug("PIL could not decode %s: %s", file, exc)
        return None


def _decode(path: PathLike) -> np.ndarray:
    """Decode ``path`` to [H, W] gray or [H, W, 3] RGB in the file's dtype (alpha dropped)."""
    return _decode_bytes(*_read_bytes(path))


def _decode_bytes(file: Path, data: bytes, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    """``_decode`` of the bytes ``data`` of ``file`` (``flags``: OpenCV's, e.g. a reduced JPEG decode)."""
    _check_complete(file, data)
    if data.startswith(_GIF_MAGICS):  # PIL first: not every OpenCV build reads GIF
        pixels = _decode_pil(file, data)
        if pixels is not None:
            return pixels
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if pixels is None:
        logger.debug("OpenCV could not decode %s, trying PIL", file)
        pixels = _decode_pil(file, data)
        if pixels is None:
            raise ImageReadError(
                f"{file}: not a decodable image ({len(data)} bytes, starting {data[:8]!r}); OpenCV and PIL both failed"
            )
        return pixels
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        return pixels[:, :, 0]
    if pixels.ndim == 3:
        if pixels.shape[2] not in (3, 4):
            raise ImageReadError(f"{file}: unsupported channel count {pixels.shape[2]}")
        # BGR(A) -> contiguous RGB in one SIMD pass (a strided numpy copy of a Carvana frame costs 20x more)
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB if pixels.shape[2] == 3 else cv2.COLOR_BGRA2RGB)
    return pixels


_DRAFTS = {  # libjpeg's DCT scaling: 1/k of each side (rounded up) at a fraction of a full decode's cost
    8: (cv2.IMREAD_REDUCED_COLOR_8, cv2.IMREAD_REDUCED_GRAYSCALE_8),
    4: (cv2.IMREAD_REDUCED_COLOR_4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
    2: (cv2.IMREAD_REDUCED_COLOR_2, cv2.IMREAD_REDUCED_GRAYSCALE_2),
}


def draft_factor(native: tuple[int, int], target: tuple[int, int]) -> int:
    """The largest k in 8, 4, 2 whose 1/k decode of a ``native`` (H, W) JPEG still leaves at least twice the
    ``target`` (H, W) on both sides for the area resize after it; 1 (a full decode) when none does."""
    for k in _DRAFTS:
        if all(-(-n // k) >= 2 * t for n, t in zip(native, target, strict=True)):
            return k
    return 1


def read_pixels_draft(path: PathLike, target: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """``read_pixels`` for an image that will be shrunk to ``target`` (H, W): (pixels, native (H, W)).

    A gray or RGB JPEG large enough (``draft_factor``) is decoded at 1/k size by libjpeg (2-4x faster at
    Carvana's 1918x1280, pixels after the area resize within a few grey levels of a full decode; EXIF
    orientation ignored as in a full decode); any other file is read in full. ``native`` is the file's size.
    """
    file, data = _read_bytes(path)
    native, flags = None, cv2.IMREAD_UNCHANGED
    if data.startswith(_JPEG_MAGIC):
        try:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as img:  # the header only
                width, height = img.size
                mode = img.mode
        except (ImportError, OSError, ValueError, SyntaxError, struct.error):
            mode = ""  # a full decode reports what is wrong
        if mode in ("L", "RGB"):
            native = (int(height), int(width))
            k = draft_factor(native, target)
            if k > 1:
                flags = _DRAFTS[k][mode == "L"] | cv2.IMREAD_IGNORE_ORIENTATION
    pixels = _to_pixels(path, _decode_bytes(file, data, flags))
    return pixels, native or (int(pixels.shape[0]), int(pixels.shape[1]))


def read_pixels(path: PathLike) -> np.ndarray:
    """Read an image as C-contiguous [H, W, 3] RGB in the file's dtype: uint8, uint16 or float32.

    Gray is replicated to 3 channels and alpha is dropped; other dtypes raise ImageReadError naming the file.
    """
    return _to_pixels(path, _decode(path))


def _to_pixels(path: PathLike, pixels: np.ndarray) -> np.ndarray:
    """Decoded [H, W] / [H, W, 3] -> C-contiguous [H, W, 3] (``read_pixels``'s rules)."""
    if pixels.dtype not in _SCALES and not np.issubdtype(pixels.dtype, np.floating):
        raise ImageReadError(f"{path}: unsupported pixel dtype {pixels.dtype} (expected 8/16-bit or float)")
    if np.issubdtype(pixels.dtype, np.floating):
        pixels = pixels.astype(np.float32, copy=False)
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    return np.ascontiguousarray(pixels)


def read_image(path: PathLike) -> np.ndarray:
    """Read an image as float32 [H, W, 3] RGB in [0, 1].

    8-bit data is divided by 255, 16-bit by 65535, float data is passed through;
    gray is replicated to 3 channels and alpha is dropped.
    """
    return unit_float(_decode(path), path)


def unit_float(pixels: np.ndarray, path: PathLike = "") -> np.ndarray:
    """Decoded [H, W] or [H, W, 3] pixels -> float32 [H, W, 3] in [0, 1] (8-bit / 255, 16-bit / 65535)."""
    source = pixels[:, :, None] if pixels.ndim == 2 else pixels
    out = np.empty(pixels.shape[:2] + (3,), dtype=np.float32)
    scale = _SCALES.get(pixels.dtype)
    if scale is not None:
        np.divide(source, np.float32(scale), out=out)
    elif np.issubdtype(pixels.dtype, np.floating):
        out[...] = source
    else:
        raise ImageReadError(f"{path}: unsupported pixel dtype {pixels.dtype} (expected 8/16-bit or float)")
    return out


def read_mask(path: PathLike) -> np.ndarray:
    """Read a mask as uint8 [H, W]: 1 where the pixel is nonzero in any color channel."""
    pixels = _decode(path)
    foreground = pixels != 0
    if foreground.ndim == 3:
        foreground = foreground.any(axis=2)
    return foreground.view(np.uint8)


def image_size(path: PathLike) -> tuple[int, int]:
    """(H, W) of an image, from the header via PIL when possible (no truncation check)."""
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(errno.ENOENT, "image file not found", str(file))
    if file.suffix.lower() in (".tif", ".tiff"):  # slides: any layout, no decompression-bomb limit (kseg.data.slides)
        from kseg.data.slides import SlideLayoutError, slide_size

        try:
            return slide_size(file)
        except SlideLayoutError as exc:  # e.g. a float TIFF: not a slide, PIL reads its header
            logger.debug("not a slide: %s (%s)", file, exc)
    try:
        from PIL import Image

        with Image.open(file) as img:
            width, height = img.size
        return int(height), int(width)
    except (ImportError, OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:  # no PIL, unknown format
        logger.debug("PIL header read failed for %s (%s); decoding instead", file, exc)
    height, width = _decode(file).shape[:2]
    return int(height), int(width)
