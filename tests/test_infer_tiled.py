"""Sliding-window prediction: equal to whole-image prediction where it should be, differing only at the blend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from torch import nn

from kseg.config import Config, load_config
from kseg.infer.ensemble import Ensemble, Member
from kseg.infer.pipeline import predict_submission
from kseg.infer.tiled import Canvas, predict_slide, to_model_input
from kseg.tiling import starts, weight_sums, window_1d

from rle_reference import ref_encode

REPO = Path(__file__).resolve().parents[1]
H, W = 96, 128


class PixelModel(nn.Module):
    """Pointwise logits 6 * (r - g): no spatial context, so tiling cannot change a pixel's value."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"mask": 6.0 * (x[:, :1] - x[:, 1:2])}


class ConvModel(nn.Module):
    """One fixed 3x3 convolution (zero padded): a pixel depends on its 8 neighbours."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3, padding=1)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g))
            self.conv.bias.fill_(0.1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"mask": self.conv(x)}


def _cfg(tmp_path: Path, *overrides: str) -> Config:
    return load_config(
        REPO / "configs" / "hubmap" / "unet-tiles.yaml",
        [
            f"data.root={tmp_path}",
            "data.num_workers=0",
            "predict.batch_size=5",
            f"tile.canvas_dir={tmp_path / 'canvas'}",
            f"runs_dir={tmp_path / 'runs'}",
            "tile.downscale=1",
            "tile.overlap=0",
            "tile.window=flat",
            "tile.size=32",
            *overrides,
        ],
    )


def _slide(tmp_path: Path, name: str = "s1") -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    path = tmp_path / "test" / f"{name}.tiff"
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, img.transpose(2, 0, 1)[None, None], photometric="rgb", planarconfig="separate")
    return path, img


def _ensemble(cfg: Config, model: nn.Module, tta: str = "none") -> Ensemble:
    return Ensemble(cfg, [Member(model, cfg, "m", 0)], tta=tta, device="cpu", amp=False)


def _whole(model: nn.Module, img: np.ndarray, cfg: Config) -> np.ndarray:
    """float32 [H, W] probabilities of the whole image in one forward pass."""
    x = torch.from_numpy(img.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
    with torch.no_grad():
        return torch.sigmoid(model(to_model_input(x, cfg))["mask"])[0, 0].numpy()


def _tiled(cfg: Config, model: nn.Module, path: Path) -> np.ndarray:
    canvas = predict_slide(_ensemble(cfg, model), path)
    try:
        return canvas.read_probs(0, H)[0]
    finally:
        canvas.close()
        assert not canvas.path.exists()


def test_grid_and_separable_weights() -> None:
    assert starts(100, 32, 32).tolist() == [0, 32, 64, 68]  # the last window ends at the edge
    assert starts(20, 32, 16).tolist() == [0]  # shorter than a window: one zero-padded window
    flat = np.ones(4, np.float32)
    np.testing.assert_array_equal(weight_sums(10, np.array([0, 3, 6]), flat), [1, 1, 1, 2, 1, 1, 2, 1, 1, 1])


def test_no_overlap_flat_weights_equal_whole_image_exactly(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    path, img = _slide(tmp_path)
    np.testing.assert_array_equal(_tiled(cfg, PixelModel(), path), _whole(PixelModel(), img, cfg))


def test_overlap_gaussian_differs_only_by_rounding_for_a_pointwise_model(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "tile.overlap=12", "tile.window=gaussian")
    path, img = _slide(tmp_path)
    diff = np.abs(_tiled(cfg, PixelModel(), path) - _whole(PixelModel(), img, cfg))
    assert diff.max() <= 1e-6  # stated tolerance: a weighted mean of equal values, float32 rounding


@pytest.mark.parametrize("overrides", [(), ("tile.overlap=12", "tile.window=gaussian")])
def test_conv_model_differs_only_next_to_tile_borders(tmp_path: Path, overrides: tuple[str, ...]) -> None:
    cfg = _cfg(tmp_path, *overrides)
    path, img = _slide(tmp_path)
    diff = np.abs(_tiled(cfg, ConvModel(), path) - _whole(ConvModel(), img, cfg))
    tile = cfg.tile
    near = np.zeros((H, W), bool)  # within 1 pixel (the receptive field) of an inner tile border
    for axis, length in ((0, H), (1, W)):
        for s in starts(length, tile.span, tile.step).tolist():
            for edge in (s, s + tile.span):
                if 0 < edge < length:
                    idx = [slice(None), slice(None)]
                    idx[axis] = slice(edge - 1, edge + 1)
                    near[tuple(idx)] = True
    assert diff[~near].max() <= 1e-6
    assert diff[near].max() > 1e-3  # the seams do differ: this is not a pointwise model


def test_canvas_weights_and_window(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "tile.overlap=16", "tile.window=gaussian")
    window = window_1d(cfg.tile)
    assert window.shape == (32,) and window[0] == window[-1] and window.max() == window[15]
    canvas = Canvas((40, 50), 1, cfg.tile)
    canvas.add(0, 0, np.ones((1, 32, 32), np.float32))
    assert canvas.read_probs(0, 2).shape == (1, 2, 50)
    canvas.close()


def test_predict_submission_goes_through_tiles(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "tile.overlap=8", "tile.window=gaussian", "tile.strip=7")
    path, img = _slide(tmp_path, "aaa111")
    _slide(tmp_path, "bbb222")
    pd.DataFrame({"id": ["bbb222", "aaa111"], "predicted": ["", ""]}).to_csv(
        tmp_path / "sample_submission.csv", index=False
    )
    out = tmp_path / "sub.csv"
    res = predict_submission(cfg, ensemble=_ensemble(cfg, PixelModel(), "hvflip"), out=out, progress=False)
    assert res.images == 2 and res.views == 4
    sub = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(sub.columns) == ["id", "predicted"] and list(sub.id) == ["bbb222", "aaa111"]
    want = ref_encode((np.rint(_whole(PixelModel(), img, cfg) * 255) > 127).astype(np.uint8), "column")
    assert sub.predicted.tolist() == [want, want]
    with pytest.raises(ValueError, match="--save-probs and --pseudo-labels need whole images"):
        predict_submission(cfg, ensemble=_ensemble(cfg, PixelModel()), out=out, save_probs=tmp_path / "p")


@pytest.mark.parametrize("normalize", ["imagenet", "unit", "max"])
def test_tile_inputs_are_normalised_as_in_training(normalize: str) -> None:
    cfg = load_config(REPO / "configs/demo.yaml", [f"data.normalize={normalize}"])
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.5  # maxima well below 1
    got = to_model_input(x, cfg)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    want = {"imagenet": (x - mean) / std, "unit": x, "max": x / x.amax(dim=(1, 2, 3), keepdim=True)}[normalize]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
