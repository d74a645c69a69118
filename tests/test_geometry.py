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


def test_fit_mask_nearest_keeps_binary() -> None:
    cfg = cfg_with("data.image_size=[64,128]")
    m = (np.random.default_rng(0).random((128, 256, 4)) > 0.5).astype(np.uint8)
    out = geometry.fit_mask(m, cfg)
    assert out.shape == (64, 128, 4) and set(np.unique(out)) <= {0, 1}


def test_submission_size() -> None:
    cfg = cfg_with()
    assert geometry.submission_size(cfg, (1, 1)) == (128, 256)
    cfg2 = cfg_with("competition.submission_size=null")
    assert geometry.submission_size(cfg2, (77, 99)) == (77, 99)
