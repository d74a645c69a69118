"""kseg.data.pixels: the integer input path gives the model the tensor the float path gave (8- and 16-bit)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from kseg.config import load_config
from kseg.data import geometry
from kseg.data.dataset import SegDataset, read_labels
from kseg.data.images import read_image
from kseg.data.pixels import IMAGENET_MEAN, IMAGENET_STD, model_input, to_unit_float
from kseg.train.data import EpochSeeded

from conftest import REPO, shared_dataset


def _float_path(path: Path, cfg) -> torch.Tensor:
    """The former model input: float32 [0, 1] read, fitted in float, normalised on the host, [3, h, w]."""
    image = geometry.fit_image(read_image(path), cfg)
    if cfg.data.normalize == "imagenet":
        image = (image - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def _integer_path(ds: SegDataset, n: int) -> torch.Tensor:
    batch = default_collate([ds[i] for i in range(n)])
    return model_input(batch["image"], ds.cfg.data.normalize)


def test_demo_8bit_same_tensor(demo_cfg) -> None:
    ids = read_labels(demo_cfg).image_id.tolist()[:4]
    ds = SegDataset(demo_cfg, ids)
    assert ds[0]["image"].dtype == torch.uint8
    want = torch.stack([_float_path(ds.path(i), demo_cfg) for i in range(4)])
    torch.testing.assert_close(_integer_path(ds, 4), want, rtol=0, atol=2e-6)  # float rounding only


def test_tgs_8bit_padded_same_tensor() -> None:
    root = shared_dataset("tgs-salt")
    cfg = load_config(REPO / "configs/tgs-salt/unet-r34.yaml", [f"data.root={root}"])
    ids = read_labels(cfg).image_id.tolist()[:3]
    ds = SegDataset(cfg, ids)  # 101x101 reflect-padded to 128x128
    want = torch.stack([_float_path(ds.path(i), cfg) for i in range(3)])
    torch.testing.assert_close(_integer_path(ds, 3), want, rtol=0, atol=2e-6)


def _write_16bit(folder: Path, name: str, size: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 65536, size=(*size, 3), dtype=np.uint16)  # not multiples of 257: real 16-bit detail
    folder.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(folder / name), rgb[..., ::-1])
    return rgb


def _cfg16(tmp_path: Path, *extra: str):
    overrides = ["competition.image_ext=.png", "competition.ids_have_ext=true", "data.augment=[]", *extra]
    return load_config(REPO / "configs" / "demo.yaml", [f"data.root={tmp_path}", *overrides])


def test_16bit_same_tensor(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    rgb = _write_16bit(folder, "a.png", (32, 64), 0)
    cfg = _cfg16(tmp_path, "data.image_size=[32, 64]")
    ds = SegDataset(cfg, ["a.png"], image_dir=folder)
    assert ds[0]["image"].dtype == torch.uint16
    got = _integer_path(ds, 1)
    torch.testing.assert_close(got, _float_path(folder / "a.png", cfg)[None], rtol=0, atol=2e-6)
    # by hand, one pixel: (p / 65535 - mean) / std
    want = (rgb[3, 5] / 65535 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(got[0, :, 3, 5].numpy(), want, atol=2e-6)


@pytest.mark.parametrize("bits", [8, 16])
def test_resized_input_within_one_grey_level(tmp_path: Path, bits: int) -> None:
    # Resampling in the integer type rounds each output pixel: at most one grey level from the float resize.
    folder = tmp_path / "imgs"
    if bits == 16:
        _write_16bit(folder, "a.png", (90, 170), 1)
    else:
        folder.mkdir()
        cv2.imwrite(str(folder / "a.png"), np.random.default_rng(1).integers(0, 256, (90, 170, 3), dtype=np.uint8))
    for size in ("[32, 64]", "[128, 256]"):  # INTER_AREA down, INTER_LINEAR up
        cfg = _cfg16(tmp_path, f"data.image_size={size}", "data.normalize=unit")
        got = _integer_path(SegDataset(cfg, ["a.png"], image_dir=folder), 1)
        diff = (got - _float_path(folder / "a.png", cfg)[None]).abs().max().item()
        assert diff <= 1.0 / (2**bits - 1) + 1e-6, (bits, size, diff)


def test_augmentation_rounding_changes_no_mask_pixel(demo_cfg) -> None:
    augment = (
        "data.augment=[{name: HorizontalFlip, params: {p: 0.5}}, {name: Affine, params: {scale: [0.8, 1.2], "
        "rotate: [-15, 15], p: 1.0}}, {name: RandomBrightnessContrast, params: {p: 1.0}}]"
    )
    base = [f"data.root={demo_cfg.data.root}", augment]
    labels = read_labels(demo_cfg)
    ids = labels.image_id.tolist()[:6]
    out = {}
    for pixels in ("uint8", "float"):
        cfg = load_config(REPO / "configs/demo.yaml", [*base, f"data.pixels={pixels}"])
        ds = EpochSeeded(SegDataset(cfg, ids, labels, train=True), seed=7)
        out[pixels] = [ds[(3, i)] for i in range(len(ids))]
    for a, b in zip(out["uint8"], out["float"], strict=True):
        assert a["image"].dtype == torch.uint8 and b["image"].dtype == torch.float32
        assert torch.equal(a["mask"], b["mask"])  # same geometry drawn, same nearest-neighbour masks
        x, y = model_input(a["image"][None], "unit"), b["image"][None]
        assert (x - y).abs().max() <= 2.0 / 255 + 1e-6  # interpolation + brightness rounding in uint8
    assert any(a["mask"].any() for a in out["uint8"])


def test_model_input_writes_channels_last_and_refuses_other_dtypes() -> None:
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.int64).remainder(256).to(torch.uint8).view(2, 3, 4, 5)
    y = model_input(x, "unit", channels_last=True)
    assert y.dtype == torch.float32 and y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, x.float() / 255, rtol=0, atol=1e-7)
    with pytest.raises(TypeError, match="unsupported image dtype torch.int64"):
        model_input(x.long(), "unit")
    unit = to_unit_float(np.array([[[65535, 0, 32768]]], np.uint16))
    assert unit.dtype == np.float32 and np.allclose(unit, [[[1.0, 0.0, 32768 / 65535]]], rtol=0, atol=1e-7)
