"""Item 6: 16-bit, grayscale, RGBA and palette images load with the right channels and scale.

tests/test_images.py covers the decoder on 8/16-bit gray and colour PNG, RGBA (alpha dropped), JPEG,
palette GIF and float TIFF. Here the formats it lacks (palette PNG, gray + alpha, 16-bit RGBA, 1-bit,
16-bit JPEG-less TIFF) with hand-computed values, and every format end to end through ``SegDataset``:
a competition whose images come in any of them yields the same normalised [3, h, w] tensor.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from kseg.config import load_config
from kseg.data.dataset import SegDataset
from kseg.data.images import read_image, read_mask
from kseg.data.pixels import model_input

from _reliab import DEMO_YAML

# a 2x3 RGB probe, no two pixels alike, no channel symmetric
RGB = np.array([[[255, 0, 0], [0, 128, 0], [0, 0, 64]], [[10, 20, 30], [200, 100, 50], [1, 2, 3]]], np.uint8)
GRAY = np.array([[0, 51, 255], [128, 1, 7]], np.uint8)


def _palette_png(path: Path) -> Path:
    img = Image.fromarray(RGB, "RGB").quantize(colors=6, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    img.save(path)
    assert Image.open(path).mode == "P"
    return path


def test_palette_png_expands_to_its_colours(tmp_path):
    image = read_image(_palette_png(tmp_path / "p.png"))
    assert image.shape == (2, 3, 3) and image.dtype == np.float32
    np.testing.assert_allclose(image, RGB / 255.0, atol=1e-6)  # 6 colours fit a 6-entry palette exactly


def test_palette_png_mask_is_nonzero_index_colour(tmp_path):
    img = Image.fromarray(np.array([[0, 1], [2, 0]], np.uint8), "P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    img.save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), [[0, 1], [1, 0]])


def test_gray_with_alpha_drops_alpha(tmp_path):
    la = np.stack([GRAY, np.full_like(GRAY, 9)], axis=-1)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    image = read_image(tmp_path / "la.png")
    assert image.shape == (2, 3, 3)
    for c in range(3):
        np.testing.assert_allclose(image[..., c], GRAY / 255.0, atol=1e-6)


def test_rgba_16bit_divides_by_65535_and_drops_alpha(tmp_path):
    rgb16 = RGB.astype(np.uint16) * 257  # 255 -> 65535
    bgra = np.concatenate([rgb16[..., ::-1], np.full(RGB.shape[:2] + (1,), 1234, np.uint16)], axis=-1)
    assert cv2.imwrite(str(tmp_path / "a16.png"), bgra)
    image = read_image(tmp_path / "a16.png")
    assert image.shape == (2, 3, 3)
    np.testing.assert_allclose(image, rgb16 / 65535.0, atol=1e-6)


def test_one_bit_png(tmp_path):
    bits = np.array([[1, 0, 1], [0, 0, 1]], bool)
    Image.fromarray(bits).save(tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").mode == "1"
    image = read_image(tmp_path / "b.png")
    np.testing.assert_allclose(image[..., 0], bits.astype(np.float32))
    np.testing.assert_array_equal(read_mask(tmp_path / "b.png"), bits.astype(np.uint8))


def test_16bit_tiff(tmp_path):
    gray16 = np.array([[0, 65535, 300], [1, 2, 40000]], np.uint16)
    assert cv2.imwrite(str(tmp_path / "g.tif"), gray16)
    np.testing.assert_allclose(read_image(tmp_path / "g.tif")[..., 2], gray16 / 65535.0, atol=1e-7)


WRITERS = {
    "rgb8.png": lambda p, rgb: cv2.imwrite(str(p), rgb[..., ::-1]),
    "rgb16.png": lambda p, rgb: cv2.imwrite(str(p), rgb[..., ::-1].astype(np.uint16) * 257),
    "rgba8.png": lambda p, rgb: cv2.imwrite(str(p), np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 77, np.uint8)])),
    "rgba16.png": lambda p, rgb: cv2.imwrite(
        str(p), np.dstack([rgb[..., ::-1].astype(np.uint16) * 257, np.full(rgb.shape[:2], 5, np.uint16)])
    ),
    "palette.png": lambda p, rgb: (
        Image.fromarray(rgb).quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(p)
    ),
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_every_format_gives_the_same_model_input(tmp_path, name):
    rng = np.random.default_rng(0)
    rgb = rng.choice(np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [20, 40, 250]], np.uint8), size=(32, 64))
    folder = tmp_path / "imgs"
    folder.mkdir()
    assert WRITERS[name](folder / "x.png", rgb) is not False
    ref = folder / "ref.png"
    cv2.imwrite(str(ref), rgb[..., ::-1])
    cfg = load_config(
        DEMO_YAML,
        ["data.image_size=[32, 64]", "competition.image_ext=.png", "data.augment=[]", "competition.ids_have_ext=true"],
    )
    ds = SegDataset(cfg, ["x.png", "ref.png"], image_dir=folder)
    got, want = (model_input(ds[i]["image"][None], cfg.data.normalize)[0] for i in (0, 1))
    assert got.shape == (3, 32, 64) and got.dtype == torch.float32
    assert torch.allclose(got, want, atol=1e-5), name  # same channels (RGB order), same [0, 1] scale
