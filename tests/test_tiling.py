"""kseg.tiling: which slide a tile id belongs to (slide_ids / slide_groups), the one owner of the tile id pattern."""

from __future__ import annotations

import numpy as np
import pytest
from test_data_tiles import REPO

from kseg.config import load_config
from kseg.tiling import parse_tile_id, slide_groups, slide_ids, tile_id
from kseg.typed import ConfigError

# HuBMAP slide ids (9 hex digits; 2f6ecfcdf is the train slide of tests/fixtures/rle_real.json) and their tiles
IDS = ["2f6ecfcdf@0_0", "aaa6a05cc@1024_0", "2f6ecfcdf@1024_2048", "aaa6a05cc", "2f6ecfcdf@0_1024"]


def test_slide_ids_strip_the_tile_suffix_only() -> None:
    got = slide_ids(IDS)
    assert got.tolist() == ["2f6ecfcdf", "aaa6a05cc", "2f6ecfcdf", "aaa6a05cc", "2f6ecfcdf"]
    assert got.tolist() == [(parse_tile_id(i) or (i,))[0] for i in IDS]  # the same answer as parse_tile_id
    # an @ that is not a tile suffix stays part of the id; only the last @y_x is the tile's
    assert slide_ids(["a@b", "a@1_x", tile_id("s@1_2", 3, 4)]).tolist() == ["a@b", "a@1_x", "s@1_2"]
    assert slide_ids([]).tolist() == []


def test_slide_groups_index_the_slides_in_first_seen_order() -> None:
    group, slides = slide_groups(IDS)
    assert group.dtype == np.int64 and group.tolist() == [0, 1, 0, 1, 0]
    assert slides.tolist() == ["2f6ecfcdf", "aaa6a05cc"]
    assert (slides[group] == slide_ids(IDS)).all()


def test_tiles_refuse_volume_metrics() -> None:
    """Tiles of 2D slides have no 3D case: a volume metric with tile.size > 0 is refused at load time."""
    cfg = load_config(REPO / "configs/hubmap/unet-tiles.yaml")
    assert cfg.tile.enabled
    with pytest.raises(ConfigError, match="tile.size: 256 tiles 2D slides.*dice_hausdorff"):
        load_config(REPO / "configs/uwmgi/unet-r34-25d.yaml", ["tile.size=256"])
