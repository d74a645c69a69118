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


# --------------------------------------------------------------------------- JPEG draft decode (data.jpeg_draft)


def test_draft_factor_leaves_twice_the_target_for_the_area_resize() -> None:
    from kseg.data.images import draft_factor

    assert draft_factor((1280, 1918), (128, 128)) == 4  # 320x480 >= 256x256; 1/8 would be 160 < 256
    assert draft_factor((1280, 1918), (64, 64)) == 8
    assert draft_factor((1281, 1917), (160, 160)) == 4  # sides round up: 321, 480
    assert draft_factor((1280, 1918), (1024, 1024)) == 1  # Carvana at 1024: a full decode
    assert draft_factor((256, 1600), (128, 800)) == 1  # Severstal at half size: 1/2 leaves only 1x
    assert draft_factor((101, 101), (128, 128)) == 1  # growing: never


def _scene(h: int, w: int) -> np.ndarray:
    """BGR: a smooth gradient, a sharp red rectangle top-left and a blue disc bottom-right (not symmetric)."""
    yy, xx = np.mgrid[:h, :w]
    bgr = np.stack([xx * 200 // w, yy * 200 // h, (xx + yy) * 100 // (h + w)], axis=-1).astype(np.uint8)
    bgr[h // 10 : h // 3, w // 12 : w // 2] = (0, 0, 255)
    bgr[(yy - 3 * h // 4) ** 2 + (xx - 3 * w // 4) ** 2 < (h // 6) ** 2] = (255, 0, 0)
    return bgr


def test_draft_decode_is_a_smaller_rgb_frame_close_to_the_full_decode(tmp_path: Path) -> None:
    from kseg.data.images import read_pixels_draft

    path = _write(tmp_path / "car.jpg", _scene(1281, 1917), [cv2.IMWRITE_JPEG_QUALITY, 95])
    pixels, native = read_pixels_draft(path, (128, 128))
    assert native == (1281, 1917)  # the file's size, not the decoded one
    assert pixels.shape == (321, 480, 3) and pixels.dtype == np.uint8 and pixels.flags.c_contiguous  # 1/4, up
    full = read_pixels(path)
    assert pixels[60, 150, 0] > 200 and pixels[60, 150, 2] < 60  # inside the red rectangle, in RGB order
    assert pixels[240, 360, 2] > 200 and pixels[240, 360, 0] < 60  # inside the blue disc
    small = cv2.resize(pixels, (128, 128), interpolation=cv2.INTER_AREA).astype(int)
    want = cv2.resize(full, (128, 128), interpolation=cv2.INTER_AREA).astype(int)
    diff = np.abs(small - want)
    # what the model sees: most pixels within one grey level, a few more along the sharp edges
    assert diff.mean() < 0.5 and (diff <= 1).mean() > 0.9 and np.percentile(diff, 99) <= 8


def test_draft_decode_gray_png_and_exif_orientation(tmp_path: Path) -> None:
    from PIL import Image

    from kseg.data.images import read_pixels_draft

    gray = _write(tmp_path / "g.jpg", _scene(400, 640)[:, :, 1].copy())
    pixels, native = read_pixels_draft(gray, (50, 80))
    assert native == (400, 640) and pixels.shape == (100, 160, 3)  # 1/4: twice 50x80 is left
    assert (pixels[..., 0] == pixels[..., 2]).all()
    png = _write(tmp_path / "p.png", _scene(400, 640))  # not a JPEG: read in full
    pixels, native = read_pixels_draft(png, (50, 80))
    assert native == (400, 640) and pixels.shape == (400, 640, 3)
    np.testing.assert_array_equal(pixels, read_pixels(png))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": a full decode ignores it, so must the draft
    rotated = tmp_path / "r.jpg"
    Image.fromarray(_scene(400, 640)[:, :, ::-1]).save(rotated, "JPEG", exif=exif.tobytes())
    pixels, native = read_pixels_draft(rotated, (50, 80))
    assert native == (400, 640) and pixels.shape == (100, 160, 3) == (
        *(s // 4 for s in read_pixels(rotated).shape[:2]),
        3,
    )
