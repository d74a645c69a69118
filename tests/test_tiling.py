"""kseg.tiling: which slide a tile id belongs to (slide_ids / slide_groups), the one owner of the tile id pattern."""

from __future__ import annotations

import numpy as np
import pytest
from test_data_tiles import REPO

from kseg.config import load_config
from kseg.tiling import box_masks, owned_boxes, parse_tile_id, slide_groups, slide_ids, starts, tile_id
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


def test_owned_boxes_partition_the_slide_hand_computed() -> None:
    """A 697 x 947 slide (the demo's 043b27b61) in 256-pixel windows: rows start 0, 256, 441 and columns 0, 256,
    512, 691 (the last moved back to end at the edge). The window at row 441 holds rows 512..696 alone, i.e.
    71..255 of its own; the one at column 691 columns 768..946 (77..255). Painting each window's box covers
    every slide pixel exactly once."""
    size, span = (697, 947), 256
    ys, xs = starts(size[0], span, span), starts(size[1], span, span)
    assert ys.tolist() == [0, 256, 441] and xs.tolist() == [0, 256, 512, 691]
    origins = np.array([(y, x) for y in ys for x in xs])
    boxes = owned_boxes(origins, np.tile(size, (len(origins), 1)), span)
    assert boxes[0].tolist() == [0, 256, 0, 256]
    assert boxes[-1].tolist() == [71, 256, 77, 256]  # (441, 691)
    assert boxes[3].tolist() == [0, 256, 77, 256]  # (0, 691)
    count = np.zeros(size, int)
    for (y0, x0), (top, bottom, left, right) in zip(origins, boxes, strict=True):
        count[y0 + top : y0 + bottom, x0 + left : x0 + right] += 1
    assert (count == 1).all()
    # a slide shorter than a window: one zero-padded window, holding only the slide's pixels
    assert owned_boxes(np.array([[0, 0], [0, 44]]), np.array([[100, 300]] * 2), span).tolist() == [
        [0, 100, 0, 256],
        [0, 100, 212, 256],
    ]
    with pytest.raises(ValueError, match=r"window at \(y0, x0\) = \(0, 300\) of a \(100, 300\) slide"):
        owned_boxes(np.array([[0, 300]]), np.array([[100, 300]]), span)


def test_box_masks_mark_the_box() -> None:
    got = box_masks(np.array([[1, 3, 0, 2], [0, 0, 0, 4]]), (3, 4))
    assert got.shape == (2, 3, 4) and got.dtype == bool
    np.testing.assert_array_equal(got[0], [[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 0, 0]])
    assert not got[1].any()
