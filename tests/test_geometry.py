from __future__ import annotations

import numpy as np
import pytest
import torch

from kseg.config import load_config
from kseg.data import geometry

from conftest import REPO


def cfg_with(*overrides: str):
    return load_config(REPO / "configs/demo.yaml", list(overrides))


def test_pad_offsets_centre() -> None:
    assert geometry.pad_offsets((101, 101), (128, 128)) == (13, 14, 13, 14)
    assert geometry.pad_offsets((5, 8), (8, 8)) == (1, 2, 0, 0)
    with pytest.raises(ValueError, match="larger than data.image_size"):
        geometry.pad_offsets((130, 10), (128, 128))


def test_pad_then_restore_is_exact_on_asymmetric_probe() -> None:
    cfg = cfg_with("data.resize=pad", "data.image_size=[128,128]")
    probe = np.arange(101 * 101 * 3, dtype=np.float32).reshape(101, 101, 3)
    padded = geometry.fit_image(probe, cfg)
    assert padded.shape == (128, 128, 3)
    t = torch.from_numpy(padded.transpose(2, 0, 1)[None])
    back = geometry.restore(t, (101, 101), cfg)
    assert torch.equal(back[0], torch.from_numpy(probe.transpose(2, 0, 1)))
    # reflect padding: the row above the image mirrors row 1
    assert np.array_equal(padded[12, 13:114], probe[1])


def test_resize_restore_shapes_and_values() -> None:
    cfg = cfg_with("data.image_size=[64,128]")
    img = np.zeros((128, 256, 3), np.float32)
    img[:, :128] = 1.0  # left half bright: not symmetric under hflip
    small = geometry.fit_image(img, cfg)
    assert small.shape == (64, 128, 3) and small[:, :60].min() == 1.0 and small[:, 68:].max() == 0.0
    probs = torch.from_numpy(small.transpose(2, 0, 1)[None].copy())
    big = geometry.restore(probs, (128, 256), cfg)
    assert big.shape == (1, 3, 128, 256)
    assert big[0, 0, :, :120].min() == 1.0 and big[0, 0, :, 136:].max() == 0.0
    # submission smaller than native (Clouds): restore straight to the submission size
    assert geometry.restore(probs, (35, 52), cfg).shape == (1, 3, 35, 52)


def test_fit_mask_keeps_binary() -> None:
    cfg = cfg_with("data.image_size=[64,128]")
    m = (np.random.default_rng(0).random((128, 256, 4)) > 0.5).astype(np.uint8)
    out = geometry.fit_mask(m, cfg)
    assert out.shape == (64, 128, 4) and out.dtype == np.uint8 and set(np.unique(out)) <= {0, 1}


# --------------------------------------------------------------------------- mask alignment
# The reference is written here from the rule, not from OpenCV: a shrinking axis averages the exact
# overlap of the two pixel grids (aligned on their outer edges); a growing axis picks the old pixel under
# each new pixel's centre. A pixel is foreground when at least half of it is.


def _axis_weights(n: int, k: int) -> np.ndarray:
    """float32 [k, n]: share of new pixel i (of k) taken from old pixel j (of n) along one axis."""
    if k > n:
        w = np.zeros((k, n), np.float32)
        w[np.arange(k), ((2 * np.arange(k) + 1) * n) // (2 * k)] = 1.0
        return w
    edges = np.arange(k + 1) * (n / k)
    j = np.arange(n)
    overlap = np.minimum(edges[1:, None], j + 1) - np.maximum(edges[:-1, None], j)
    return (np.clip(overlap, 0, None) * (k / n)).astype(np.float32)


def _reference_coverage(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float [H, W] 0/1 -> float [h, w]: the share of each new pixel that is foreground."""
    return _axis_weights(mask.shape[0], size[0]) @ mask.astype(np.float32) @ _axis_weights(mask.shape[1], size[1]).T


def _ellipse(h: int, w: int) -> np.ndarray:
    """A car-sized ellipse, off-centre: 60% of the height, 76% of the width."""
    y, x = np.mgrid[:h, :w] + 0.5
    return ((((y - 0.52 * h) / (0.3 * h)) ** 2 + ((x - 0.47 * w) / (0.38 * w)) ** 2) <= 1).astype(np.uint8)


def _two_ellipses(h: int, w: int) -> np.ndarray:
    """A smooth asymmetric probe: a body ellipse and a smaller one up and to the right of it."""
    y, x = np.mgrid[:h, :w] + 0.5
    body = (((y - 0.6 * h) / (0.25 * h)) ** 2 + ((x - 0.4 * w) / (0.3 * w)) ** 2) <= 1
    head = (((y - 0.3 * h) / (0.2 * h)) ** 2 + ((x - 0.65 * w) / (0.12 * w)) ** 2) <= 1
    return (body | head).astype(np.uint8)


def _l_shape(h: int, w: int) -> np.ndarray:
    """An off-centre L: a tall bar on the left and a foot to the right; no flip maps it onto itself."""
    m = np.zeros((h, w), np.uint8)
    m[h // 7 : 4 * h // 5, w // 9 : w // 9 + w // 6] = 1
    m[4 * h // 5 - h // 8 : 4 * h // 5, w // 9 : 2 * w // 3] = 1
    return m


def _centroid(m: np.ndarray) -> np.ndarray:
    return np.argwhere(m).mean(axis=0)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def _round_trip(small: np.ndarray, native: tuple[int, int]) -> np.ndarray:
    """A perfectly learned model-size target restored like predictions: bilinear ``restore``, > 0.5."""
    cfg = cfg_with("data.resize=resize")
    probs = torch.from_numpy(small.astype(np.float32))[None, None]
    return geometry.restore(probs, native, cfg)[0, 0].numpy() >= 0.5


@pytest.mark.parametrize(
    "native,size",
    [((1280, 1918), (128, 128)), ((1400, 2100), (320, 480)), ((1400, 2100), (350, 525))],
    ids=["carvana-128", "clouds-320x480", "clouds-submission-350x525"],
)
def test_mask_round_trip_stays_centred(native: tuple[int, int], size: tuple[int, int]) -> None:
    # nearest sampling (top-left) moved these centroids by 4.3-7.6 px (Carvana), 1.5-2.2 px (Clouds)
    for name, probe in (("ellipse", _ellipse(*native)), ("two", _two_ellipses(*native)), ("L", _l_shape(*native))):
        cov = _reference_coverage(probe, size)
        small = geometry.resize_masks(probe, size)
        assert small.shape == size and small.dtype == np.uint8
        # every pixel follows the rule, except where the share is within uint8 rounding of one half
        assert not ((small.astype(bool) != (cov >= 0.5)) & (np.abs(cov - 0.5) > 1 / 254)).any(), name
        back = _round_trip(small, native)
        reference = _round_trip((cov >= 0.5).astype(np.uint8), native)
        assert _dice(back, probe) >= _dice(reference, probe) - 1e-4, name
        # the L's thin bars snap to the model grid (the reference moves its centroid by ~6 px at 128x128):
        # it must land where the reference lands; the smooth probes must come back where they were
        target = _centroid(reference) if name == "L" else _centroid(probe)
        assert np.abs(_centroid(back) - target).max() < 1.0, name  # native pixels, each axis


def test_resize_masks_by_hand() -> None:
    # 4x4 -> 2x2: quadrants covered 3/4 (top-left), 1/4 (top-right), 0, 3/4 (bottom-right, not at its
    # top-left pixel, where nearest sampling looked)
    m = np.array([[1, 1, 0, 0], [1, 0, 0, 1], [0, 0, 0, 1], [0, 0, 1, 1]], np.uint8)
    assert geometry.resize_masks(m, (2, 2)).tolist() == [[1, 0], [0, 1]]
    # a 1-pixel line survives a 2x downscale on either column parity (half a new pixel counts) ...
    for col, expected in ((1, [1, 0]), (2, [0, 1])):
        line = np.zeros((4, 4), np.uint8)
        line[:, col] = 1
        assert geometry.resize_masks(line, (2, 2)).tolist() == [expected, expected]
    # ... and vanishes at 3x (a third of a new pixel), as it fades to a third in the image
    line = np.zeros((6, 6), np.uint8)
    line[:, 4] = 1
    assert geometry.resize_masks(line, (2, 2)).sum() == 0
    # upscaling 3 -> 4 copies the old pixel under each new centre (0.375, 1.125, 1.875, 2.625): a b b c
    row = np.array([[1, 0, 1]], np.uint8)
    assert geometry.resize_masks(row, (1, 4)).tolist() == [[1, 0, 0, 1]]
    assert geometry.resize_masks(np.array([[1], [0], [0]], np.uint8), (4, 1)).ravel().tolist() == [1, 0, 0, 0]
    # 2 x 3 -> 4 x 6 repeats every pixel, channels kept apart
    two = np.stack([np.array([[1, 0, 0], [0, 0, 1]]), np.array([[0, 1, 0], [0, 0, 0]])], axis=-1).astype(np.uint8)
    assert np.array_equal(geometry.resize_masks(two, (4, 6)), two.repeat(2, axis=0).repeat(2, axis=1))


@pytest.mark.parametrize("native,size", [((320, 479), (32, 32)), ((101, 101), (128, 128)), ((100, 330), (61, 500))])
def test_resize_masks_commutes_with_flips(native: tuple[int, int], size: tuple[int, int]) -> None:
    probe = np.stack([_l_shape(*native), _ellipse(*native)], axis=-1)
    out = geometry.resize_masks(probe, size)
    assert np.array_equal(geometry.resize_masks(probe[::-1].copy(), size), out[::-1])
    assert np.array_equal(geometry.resize_masks(probe[:, ::-1].copy(), size), out[:, ::-1])
    cov = np.stack([_reference_coverage(probe[..., c], size) for c in range(2)], axis=-1)
    assert not ((out.astype(bool) != (cov >= 0.5)) & (np.abs(cov - 0.5) > 1 / 254)).any()


def test_resize_masks_many_channels_match_one_at_a_time() -> None:
    rng = np.random.default_rng(3)
    masks = (rng.random((90, 140, 6)) > np.linspace(0.2, 0.8, 6)).astype(np.uint8)  # beyond cv2's 4 channels
    for size in ((30, 50), (120, 150), (60, 170)):
        out = geometry.resize_masks(masks, size)
        assert out.shape == (*size, 6)
        for c in range(6):
            assert np.array_equal(out[..., c], geometry.resize_masks(masks[..., c], size))


def test_resize_masks_exclusive_gives_each_pixel_one_class() -> None:
    # two one-hot classes, 4x4 -> 2x2; quadrants: A|B halves, A 1/4 + B 1/4, A 1/2 + background, B 3/4
    a = np.array([[1, 0, 1, 0], [1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]], np.uint8)
    b = np.array([[0, 1, 0, 0], [0, 1, 0, 1], [0, 0, 1, 1], [0, 0, 1, 0]], np.uint8)
    m = np.stack([a, b], axis=-1)
    assert geometry.resize_masks(m, (2, 2))[..., 0].tolist() == [[1, 0], [1, 0]]
    assert geometry.resize_masks(m, (2, 2))[..., 1].tolist() == [[1, 0], [0, 1]]  # A and B both claim (0, 0)
    ex = geometry.resize_masks(m, (2, 2), exclusive=True)
    assert ex[..., 0].tolist() == [[1, 0], [1, 0]] and ex[..., 1].tolist() == [[0, 0], [0, 1]]
    # plurality without a majority at 3x: A 4/9, B 3/9, background 2/9 -> A; independent halves keep none
    three = np.zeros((3, 3, 2), np.uint8)
    three.reshape(9, 2)[[0, 1, 2, 3], 0] = 1
    three.reshape(9, 2)[[4, 5, 6], 1] = 1
    assert geometry.resize_masks(three, (1, 1)).sum() == 0
    assert geometry.resize_masks(three, (1, 1), exclusive=True).reshape(2).tolist() == [1, 0]
    # streets-sized one-hot labels at 2x: no pixel is claimed twice
    labels = np.random.default_rng(5).integers(0, 4, (64, 96)).repeat(2, 0)[:, 1:-1].repeat(2, 1)[:, :190]
    onehot = (labels[..., None] == np.arange(1, 4)).astype(np.uint8)
    assert geometry.resize_masks(onehot, (64, 95)).sum(axis=-1).max() == 2  # independent halves do double up
    assert geometry.resize_masks(onehot, (64, 95), exclusive=True).sum(axis=-1).max() == 1


def test_fit_mask_resizes_multiclass_masks_exclusively() -> None:
    cfg = cfg_with("data.image_size=[2,2]", "competition.mode=multiclass")
    assert cfg.competition.exclusive
    a = np.array([[1, 0, 1, 0], [1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]], np.uint8)
    b = np.array([[0, 1, 0, 0], [0, 1, 0, 1], [0, 0, 1, 1], [0, 0, 1, 0]], np.uint8)
    out = geometry.fit_mask(np.stack([a, b], axis=-1), cfg)
    assert out[..., 0].tolist() == [[1, 0], [1, 0]] and out[..., 1].tolist() == [[0, 0], [0, 1]]


def test_submission_size() -> None:
    cfg = cfg_with()
    assert geometry.submission_size(cfg, (1, 1)) == (128, 256)
    cfg2 = cfg_with("competition.submission_size=null")
    assert geometry.submission_size(cfg2, (77, 99)) == (77, 99)


def test_resize_bilinear_on_the_cpu_matches_torch() -> None:
    import torch
    import torch.nn.functional as F

    from kseg.data.geometry import resize_bilinear

    x = torch.rand(2, 3, 40, 50, generator=torch.Generator().manual_seed(0))
    for src in (x, x[..., 3:37, 5:45]):  # contiguous, and a cropped (padded-input) view
        for size in [(128, 96), (17, 23), (1280, 1918)]:
            want = F.interpolate(src, size=size, mode="bilinear", align_corners=False)
            got = resize_bilinear(src, size)
            assert got.shape == want.shape and (got - want).abs().max() < 1e-5, size


@pytest.mark.parametrize("resize", ["resize", "pad"])
def test_restore_quantized_is_within_one_grey_level_of_the_float_path(resize: str) -> None:
    from kseg.postprocess import quantize, threshold_level

    cfg = cfg_with(f"data.resize={resize}", "data.image_size=[64, 96]")
    g = torch.Generator().manual_seed(3)
    probs = torch.nn.functional.avg_pool2d(torch.rand(2, 2, 68, 100, generator=g), 5, 1)  # smooth, [2, 2, 64, 96]
    native = (51, 90) if resize == "pad" else (201, 333)  # pad: crop only, no resize; resize: upscale
    want = quantize(geometry.restore(probs, native, cfg, native_size=native))
    got = geometry.restore_quantized(probs, native, cfg, native_size=native)
    assert got.dtype == np.uint8 and got.shape == want.shape == (2, 2, *native)
    diff = np.abs(got.astype(int) - want)
    assert diff.max() <= 1
    if resize == "pad":  # same size after the crop: exactly the quantized crop
        assert diff.max() == 0
        top, _, left, _ = geometry.pad_offsets(native, (64, 96))
        np.testing.assert_array_equal(got, quantize(probs[..., top : top + 51, left : left + 90]))
    else:
        assert 0 < (diff == 1).mean() < 0.5  # the rounding differs sometimes, never by more
        level = threshold_level(0.5)
        flips = (got > level) != (want > level)
        assert flips.any() and np.isin(want[flips], [level, level + 1]).all()  # only pixels next to the level
