"""Slide reader: every odd TIFF layout of HuBMAP normalised to [h, w, 3] windows, checked against the array."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import tifffile

from kseg.data.slides import Slide, SlideLayoutError, slide_size

RNG = np.random.default_rng(0)
IMG = RNG.integers(0, 256, size=(70, 90, 3), dtype=np.uint8)


def _write(path: Path, layout: str) -> Path:
    if layout == "yxs_tiled":
        tifffile.imwrite(path, IMG, tile=(32, 32), photometric="rgb")
    elif layout == "leading_ones":  # HuBMAP's (1, 1, 3, H, W)
        tifffile.imwrite(path, IMG.transpose(2, 0, 1)[None, None], photometric="rgb", planarconfig="separate")
    elif layout == "channels_first":  # (3, H, W)
        tifffile.imwrite(path, IMG.transpose(2, 0, 1), photometric="minisblack")
    elif layout == "pages":  # one page (series) per channel
        with tifffile.TiffWriter(path) as tif:
            for c in range(3):
                tif.write(IMG[..., c], photometric="minisblack")
    elif layout == "pyramid":  # level 0 + a subIFD half-size level
        with tifffile.TiffWriter(path) as tif:
            tif.write(IMG, tile=(32, 32), photometric="rgb", subifds=1)
            tif.write(IMG[::2, ::2], tile=(32, 32), photometric="rgb", subfiletype=1)
    return path


@pytest.mark.parametrize("layout", ["yxs_tiled", "leading_ones", "channels_first", "pages", "pyramid"])
def test_layouts_read_the_same_windows(tmp_path: Path, layout: str) -> None:
    path = _write(tmp_path / f"{layout}.tiff", layout)
    with Slide(path) as slide:
        assert slide.size == (70, 90)
        np.testing.assert_array_equal(slide.read(0, 0, 70, 90), IMG)
        np.testing.assert_array_equal(slide.read(10, 33, 20, 41), IMG[10:30, 33:74])
        edge = slide.read(60, 80, 16, 16)  # past the bottom-right corner: zeros
        np.testing.assert_array_equal(edge[:10, :10], IMG[60:, 80:])
        assert not edge[10:].any() and not edge[:, 10:].any()
        assert not slide.read(-20, -20, 10, 10).any()


def test_gray_is_replicated_and_size_from_header(tmp_path: Path) -> None:
    path = tmp_path / "gray.tiff"
    tifffile.imwrite(path, IMG[..., 1])
    assert slide_size(path) == (70, 90)
    with Slide(path) as slide:
        window = slide.read(5, 5, 4, 4)
    np.testing.assert_array_equal(window, np.repeat(IMG[5:9, 5:9, 1:2], 3, axis=2))


def test_pickled_slide_reopens(tmp_path: Path) -> None:  # DataLoader workers get a pickled copy
    slide = Slide(_write(tmp_path / "a.tiff", "yxs_tiled"))
    copy = pickle.loads(pickle.dumps(slide))
    np.testing.assert_array_equal(copy.read(3, 4, 5, 6), IMG[3:8, 4:10])
    slide.close()
    copy.close()


def test_bad_layouts_name_the_file(tmp_path: Path) -> None:
    stack = tmp_path / "stack.tiff"
    tifffile.imwrite(stack, np.zeros((5, 2, 8, 8), np.uint8))  # 5 x 2 pages: not one plane
    with pytest.raises(SlideLayoutError, match=r"stack.tiff: TIFF axes .* expected one RGB or gray plane"):
        Slide(stack)
    junk = tmp_path / "junk.tiff"
    junk.write_bytes(b"not a tiff")
    with pytest.raises(SlideLayoutError, match="junk.tiff: not a readable TIFF"):
        Slide(junk)
    with pytest.raises(FileNotFoundError, match="missing.tiff"):
        Slide(tmp_path / "missing.tiff")
