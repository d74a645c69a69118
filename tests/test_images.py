"""Tests for kseg.data.images: formats, bit depths, channel order, broken files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from kseg.data.images import ImageReadError, image_size, read_image, read_mask, read_pixels

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _write(path: Path, pixels: np.ndarray, params: list[int] | None = None) -> Path:
    assert cv2.imwrite(str(path), pixels, params or [])
    return path


def test_gray_8bit(tmp_path: Path) -> None:
    path = _write(tmp_path / "g.png", np.array([[0, 255, 51], [128, 0, 1]], np.uint8))
    image = read_image(path)
    assert image.dtype == np.float32 and image.shape == (2, 3, 3)
    expected = np.array([[0, 1, 0.2], [128 / 255, 0, 1 / 255]], np.float32)
    for channel in range(3):
        np.testing.assert_allclose(image[:, :, channel], expected, rtol=1e-6)
    mask = read_mask(str(path))
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, [[0, 1, 1], [1, 0, 1]])
    assert image_size(path) == (2, 3)


def test_color_8bit_is_rgb(tmp_path: Path) -> None:
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[0, 1] = (10, 20, 30)  # OpenCV order: blue 10, green 20, red 30
    image = read_image(_write(tmp_path / "c.png", bgr))
    np.testing.assert_allclose(image[0, 1], np.array([30, 20, 10]) / 255, rtol=1e-6)
    assert not image[0, 0].any()
    np.testing.assert_array_equal(read_mask(tmp_path / "c.png"), [[0, 1], [0, 0]])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [3, 4])
def test_read_pixels_is_contiguous_rgb_in_the_file_dtype(tmp_path: Path, dtype: type, channels: int) -> None:
    top = np.iinfo(dtype).max
    bgr = np.zeros((2, 3, channels), dtype)
    bgr[0, 2, :3] = (1, 2, top)  # blue 1, green 2, red = the dtype's maximum (OpenCV order)
    bgr[1, 0, :3] = (top - 7, 0, 5)
    if channels == 4:
        bgr[..., 3] = 9  # alpha, dropped
    pixels = read_pixels(_write(tmp_path / "p.png", bgr))
    assert pixels.dtype == dtype and pixels.shape == (2, 3, 3) and pixels.flags.c_contiguous
    np.testing.assert_array_equal(pixels[0, 2], [top, 2, 1])
    np.testing.assert_array_equal(pixels[1, 0], [5, 0, top - 7])
    assert int(pixels.sum(dtype=np.int64)) == 2 * top + 1  # every other pixel is black


def test_gray_16bit_divides_by_65535(tmp_path: Path) -> None:
    gray = np.array([[0, 65535], [257, 1]], np.uint16)
    image = read_image(_write(tmp_path / "g16.png", gray))
    np.testing.assert_allclose(image[:, :, 0], [[0.0, 1.0], [257 / 65535, 1 / 65535]], rtol=1e-6, atol=0)
    assert float(image.max()) == 1.0
    np.testing.assert_array_equal(image[:, :, 1], image[:, :, 2])
    np.testing.assert_array_equal(read_mask(tmp_path / "g16.png"), [[0, 1], [1, 1]])


def test_color_16bit(tmp_path: Path) -> None:
    bgr = np.zeros((1, 2, 3), np.uint16)
    bgr[0, 0] = (1000, 2000, 65535)
    image = read_image(_write(tmp_path / "c16.png", bgr))
    np.testing.assert_allclose(image[0, 0], [1.0, 2000 / 65535, 1000 / 65535], rtol=1e-6)


def test_rgba_drops_alpha(tmp_path: Path) -> None:
    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[..., 3] = 255  # opaque black background
    bgra[1, 0] = (10, 20, 30, 0)  # transparent but colored
    path = _write(tmp_path / "a.png", bgra)
    image = read_image(path)
    assert image.shape == (2, 2, 3)
    np.testing.assert_allclose(image[1, 0], np.array([30, 20, 10]) / 255, rtol=1e-6)
    assert not image[0, 0].any()
    np.testing.assert_array_equal(read_mask(path), [[0, 0], [1, 0]])  # alpha ignored


def test_jpeg(tmp_path: Path) -> None:
    bgr = np.full((16, 24, 3), (40, 120, 200), np.uint8)
    path = _write(tmp_path / "j.jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 100])
    image = read_image(path)
    assert image.shape == (16, 24, 3)
    np.testing.assert_allclose(image[8, 12], np.array([200, 120, 40]) / 255, atol=3 / 255)
    assert image_size(path) == (16, 24)


def test_jpeg_with_trailing_bytes_after_eoi_is_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.jpg", np.full((8, 8), 90, np.uint8))
    path.write_bytes(path.read_bytes() + b"camera trailer data")
    np.testing.assert_allclose(read_image(path)[..., 0], 90 / 255, atol=2 / 255)


def test_gif_palette(tmp_path: Path) -> None:
    image_mod = pytest.importorskip("PIL.Image")
    palette_img = image_mod.fromarray(np.array([[0, 1], [2, 1]], np.uint8), mode="P")
    palette_img.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    path = tmp_path / "m.gif"
    palette_img.save(path)
    image = read_image(path)
    np.testing.assert_array_equal(image, np.array([[[0, 0, 0], [1, 0, 0]], [[0, 0, 1], [1, 0, 0]]], np.float32))
    np.testing.assert_array_equal(read_mask(path), [[0, 1], [1, 1]])
    assert image_size(path) == (2, 2)


def test_float_tiff_passed_through(tmp_path: Path) -> None:
    values = np.array([[0.25, 2.5], [-1.0, 0.0]], np.float32)
    path = tmp_path / "f.tiff"
    if not cv2.imwrite(str(path), values):
        pytest.skip("this OpenCV build cannot write float TIFF")
    image = read_image(path)
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image[:, :, 1], values)
    np.testing.assert_array_equal(read_mask(path), [[1, 1], [1, 0]])


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    for fn in (read_image, read_mask, image_size):
        with pytest.raises(FileNotFoundError) as info:
            fn(path)
        assert str(path) in str(info.value)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    for fn in (read_image, read_mask, image_size):
        with pytest.raises(ImageReadError, match="empty") as info:
            fn(path)
        assert str(path) in str(info.value)
    assert issubclass(ImageReadError, ValueError)


def test_directory_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path)


def _noise(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_truncated_jpeg(tmp_path: Path, keep: float) -> None:
    path = _write(tmp_path / "cut.jpg", _noise((64, 64, 3)))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ImageReadError, match="truncated JPEG") as info:
        read_image(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("cut", [4, 12, 600])
def test_truncated_png(tmp_path: Path, cut: int) -> None:
    path = _write(tmp_path / "cut.png", _noise((32, 32)))
    path.write_bytes(path.read_bytes()[:-cut])
    with pytest.raises(ImageReadError, match="truncated PNG") as info:
        read_mask(path)
    assert str(path) in str(info.value)


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    with pytest.raises(ImageReadError, match="not a decodable image") as info:
        read_image(path)
    assert str(path) in str(info.value)
    with pytest.raises(ImageReadError):
        image_size(path)


def test_real_tgs_image_and_16bit_mask() -> None:
    masks = DATA / "tgs-salt" / "train" / "masks"
    if not masks.is_dir():
        pytest.skip(f"real data not available: {masks}")
    sixteen = [
        p for p in sorted(masks.glob("*.png"))[:200] if cv2.imread(str(p), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    ]
    assert sixteen, "expected 16-bit masks in TGS train/masks"
    raw = cv2.imread(str(sixteen[0]), cv2.IMREAD_UNCHANGED)
    mask = read_mask(sixteen[0])
    assert mask.shape == (101, 101) and mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, (raw != 0).astype(np.uint8))
    assert mask.any() and raw.max() > 255  # genuinely 16-bit values
    image = read_image(DATA / "tgs-salt" / "train" / "images" / f"{sixteen[0].stem}.png")
    assert image.shape == (101, 101, 3) and image.dtype == np.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert image_size(sixteen[0]) == (101, 101)


def test_slide_tiff_size_from_its_header_in_any_layout(tmp_path: Path) -> None:
    """A whole-slide TIFF's (H, W) comes from kseg.data.slides (HuBMAP's (1, 1, 3, H, W) and (3, H, W) layouts)."""
    import tifffile

    planar = tmp_path / "planar.tiff"
    tifffile.imwrite(planar, np.zeros((1, 1, 3, 7, 9), np.uint8), photometric="rgb", planarconfig="separate")
    first = tmp_path / "first.tiff"
    tifffile.imwrite(first, np.zeros((3, 7, 9), np.uint8), photometric="minisblack")
    assert image_size(planar) == image_size(first) == (7, 9)
