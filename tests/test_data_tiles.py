"""Tile datasets over slides: seeded, resumable sampling; masks and truth windows against the reference decoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kseg.competition import read_train_labels
from kseg.config import Config, load_config
from kseg.data.rle import KAGGLE
from kseg.data.rle_stream import mask_runs
from kseg.data.tiles import TileDataset, TileTruth, grid_tile_ids, sample_window
from kseg.demo.registry import write_miniature
from kseg.tiling import TileConfig, parse_tile_id, tile_id
from kseg.train.data import EpochSeeded

from rle_reference import ref_decode, ref_encode

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hubmap_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_miniature("hubmap", tmp_path_factory.mktemp("hubmap"), seed=3, n_train=2, n_test=1, size=512)


def _cfg(root: Path, *overrides: str) -> Config:
    return load_config(
        REPO / "configs/hubmap/unet-tiles.yaml",
        [
            f"data.root={root}",
            "tile.size=32",
            "tile.overlap=0",
            "tile.downscale=2",
            "tile.per_slide=5",
            "data.augment=[]",
            *overrides,
        ],
    )


def test_tile_ids_round_trip() -> None:
    assert tile_id("2f6ecfcdf", 1024, 0) == "2f6ecfcdf@1024_0"
    assert parse_tile_id("2f6ecfcdf@1024_0") == ("2f6ecfcdf", 1024, 0)
    assert parse_tile_id("2f6ecfcdf") is None
    assert grid_tile_ids("s", (100, 70), TileConfig(size=32, downscale=2)) == ["s@0_0", "s@0_6", "s@36_0", "s@36_6"]


def test_mask_centred_windows_land_on_the_mask() -> None:
    mask = np.zeros((300, 200), np.uint8)
    mask[250:260, 20:25] = 1  # one small blob: every mask-centred window must contain it
    runs = [mask_runs(ref_encode(mask), mask.shape, KAGGLE)]
    tile = TileConfig(size=32, downscale=2, mask_fraction=1.0, jitter=0.0)
    for seed in range(20):
        y0, x0 = sample_window(np.random.default_rng(seed), mask.shape, runs, tile)
        assert 0 <= y0 <= 300 - 64 and 0 <= x0 <= 200 - 64
        window = mask[y0 : y0 + 64, x0 : x0 + 64]
        assert window.any()
    uniform = TileConfig(size=32, downscale=2, mask_fraction=0.0)
    hits = [sample_window(np.random.default_rng(s), mask.shape, runs, uniform) for s in range(200)]
    assert np.mean([mask[y : y + 64, x : x + 64].any() for y, x in hits]) < 0.5


def test_training_tiles_are_seeded_by_epoch_and_index(hubmap_root: Path) -> None:
    cfg = _cfg(hubmap_root)
    labels = read_train_labels(cfg.competition, hubmap_root)
    ids = labels.image_id.tolist()
    ds = EpochSeeded(TileDataset(cfg, ids, labels, train=True), cfg.train.seed)
    assert len(ds) == 2 * 5
    first = ds[(3, 7)]
    _ = [ds[(e, i)] for e in range(2) for i in range(4)]  # another order, as after a resume or with workers
    again = EpochSeeded(TileDataset(cfg, ids, labels, train=True), cfg.train.seed)[(3, 7)]
    assert np.array_equal(first["image"], again["image"]) and np.array_equal(first["mask"], again["mask"])
    assert not np.array_equal(first["image"], ds[(4, 7)]["image"])  # the next epoch draws another tile
    assert first["image"].shape == (3, 32, 32) and first["mask"].shape == (1, 32, 32)
    assert first["size"].tolist() == [64, 64]


def test_validation_tiles_and_truth_match_the_reference(hubmap_root: Path) -> None:
    cfg = _cfg(hubmap_root)
    spec = cfg.competition
    labels = read_train_labels(spec, hubmap_root)
    slide = labels.image_id.iloc[0]
    ds = TileDataset(cfg, [slide], labels, train=False)
    assert ds.ids[0] == f"{slide}@0_0" and all(i.startswith(slide + "@") for i in ds.ids)
    from kseg.data.slides import slide_size

    size = slide_size(hubmap_root / "train" / f"{slide}.tiff")
    full = ref_decode(labels[spec.classes[0]].iloc[0], size, "column")
    truth = TileTruth(cfg, labels.set_index("image_id")[list(spec.classes)])
    k = next(i for i, t in enumerate(ds.ids) if full[slice(*_rows(t, 64)), slice(*_cols(t, 64))].any())
    got = truth.masks([ds.ids[k]], (64, 64), 1)[0, 0]
    (ys, ye), (xs, xe) = _rows(ds.ids[k], 64), _cols(ds.ids[k], 64)
    want = np.zeros((64, 64), bool)
    want[: ye - ys, : xe - xs] = full[ys:ye, xs:xe]
    np.testing.assert_array_equal(got, want)
    item = ds[k]
    small = want[: (ye - ys) // 2 * 2, : (xe - xs) // 2 * 2].reshape((ye - ys) // 2, 2, (xe - xs) // 2, 2).mean((1, 3))
    np.testing.assert_array_equal(item["mask"][0, : small.shape[0], : small.shape[1]].numpy(), small >= 0.5)
    with pytest.raises(ValueError, match="is not a tile of a training slide"):
        truth.check(["nope@0_0"], Path("train.csv"))


def _rows(tile: str, span: int) -> tuple[int, int]:
    _, y, _ = parse_tile_id(tile)  # type: ignore[misc]
    return y, y + span


def _cols(tile: str, span: int) -> tuple[int, int]:
    _, _, x = parse_tile_id(tile)  # type: ignore[misc]
    return x, x + span
