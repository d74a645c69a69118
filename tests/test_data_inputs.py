"""Inputs: image paths from a template, lazy 2.5D stacks (edges repeat), per-record arrays and their transforms."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import kseg.data.inputs as inputs
from kseg.competition import CompetitionSpec
from kseg.data.inputs import ArrayInputs, ImagePaths, InputReader, input_channels, input_size, read_arrays, read_label
from kseg.typed import ConfigError, from_dict

UW = r"^(?P<case>(?P<patient>case\d+)_day\d+)_slice_(?P<slice>\d+)$"
LONG = {"format": "long"}


def uw_spec(context: int = 1, stride: int = 1) -> CompetitionSpec:
    return from_dict(
        CompetitionSpec,
        {
            "name": "uw",
            "classes": ["a", "b", "c"],
            "mode": "multilabel",
            "train": LONG,
            "submission": LONG,
            "volume": {"pattern": UW, "context": context, "stride": stride},
            "image_path": "{patient}/{case}/scans/slice_{slice}_*.png",
        },
    )


def write_scan(folder: Path, case: str, n: int, size: tuple[int, int] = (6, 8)) -> list[str]:
    """16-bit slices whose every pixel is 1000 x the slice number; returns their ids."""
    patient = case.split("_")[0]
    scans = folder / patient / case / "scans"
    scans.mkdir(parents=True, exist_ok=True)
    for k in range(1, n + 1):
        pixels = np.full(size, 1000 * k, np.uint16)
        assert cv2.imwrite(str(scans / f"slice_{k:04d}_{size[1]}_{size[0]}_1.50_1.50.png"), pixels)
    return [f"{case}_slice_{k:04d}" for k in range(1, n + 1)]


def test_image_path_template_finds_the_one_matching_file(tmp_path: Path) -> None:
    write_scan(tmp_path, "case7_day2", 2)
    paths = ImagePaths(uw_spec(), tmp_path)
    assert paths("case7_day2_slice_0002") == tmp_path / "case7/case7_day2/scans/slice_0002_8_6_1.50_1.50.png"
    with pytest.raises(FileNotFoundError, match="no file matches .*slice_0003_"):
        paths("case7_day2_slice_0003")
    (tmp_path / "case7/case7_day2/scans/slice_0001_9_9_1.50_1.50.png").write_bytes(b"x")
    assert paths("case7_day2_slice_0001").name == "slice_0001_8_6_1.50_1.50.png"  # folder listed once, cached
    with pytest.raises(FileNotFoundError, match="2 files"):
        ImagePaths(uw_spec(), tmp_path)("case7_day2_slice_0001")
    plain = from_dict(CompetitionSpec, {"name": "p", "classes": ["a"], "image_ext": ".jpg"})
    assert ImagePaths(plain, tmp_path)("abc") == tmp_path / "abc.jpg"


def test_template_field_unknown_is_a_config_error(tmp_path: Path) -> None:
    spec = from_dict(CompetitionSpec, {"name": "p", "classes": ["a"], "image_path": "{nope}/{id}.png"})
    with pytest.raises(ConfigError, match="no field 'nope'"):
        ImagePaths(spec, tmp_path)("x")


def test_stacks_neighbours_lazily_and_repeats_the_edges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = write_scan(tmp_path, "case1_day0", 5) + write_scan(tmp_path, "case2_day3", 2, size=(4, 4))
    order = [6, 2, 0, 5, 4, 1, 3]  # shuffled: neighbours come from the numeric slice order, not the list order
    ids = [ids[i] for i in order]
    spec = uw_spec(context=2, stride=1)
    paths = ImagePaths(spec, tmp_path)
    reader = InputReader(spec, ids, [paths(i) for i in ids])
    assert reader.neighbours.shape == (7, 5) and reader.neighbours.dtype == np.int64  # indices, no pixels held
    reads: list[Path] = []
    real = inputs.read_image
    monkeypatch.setattr(inputs, "read_image", lambda p: reads.append(Path(p)) or real(p))
    scale = 65535 / 1000  # read_image divides 16-bit by 65535
    first = reader(ids.index("case1_day0_slice_0001"))
    assert first.shape == (6, 8, 5) and first.dtype == np.float32
    np.testing.assert_allclose(first[0, 0] * scale, [1, 1, 1, 2, 3], rtol=1e-4)  # before slice 1: slice 1 again
    assert len(reads) == 5  # only the stacked slices are read
    np.testing.assert_allclose(reader(ids.index("case1_day0_slice_0004"))[0, 0] * scale, [2, 3, 4, 5, 5], rtol=1e-4)
    np.testing.assert_allclose(reader(ids.index("case2_day3_slice_0002"))[0, 0] * scale, [1, 1, 2, 2, 2], rtol=1e-4)
    assert input_channels(spec) == 5 and input_channels(uw_spec(context=0)) == 1


def test_stride_two_skips_a_slice(tmp_path: Path) -> None:
    ids = write_scan(tmp_path, "case1_day0", 5)
    spec = uw_spec(context=1, stride=2)
    reader = InputReader(spec, ids, [ImagePaths(spec, tmp_path)(i) for i in ids])
    np.testing.assert_allclose(reader(2)[0, 0] * 65.535, [1, 3, 5], rtol=1e-4)  # slice 3: slices 1, 3, 5
    np.testing.assert_allclose(reader(1)[0, 0] * 65.535, [1, 2, 4], rtol=1e-4)  # slice 2: 0 -> edge slice 1


def write_record(folder: Path, t: int = 8, h: int = 3, w: int = 4) -> Path:
    """band_11/14/15 [H, W, T] where frame f of band b is b11 = 270 + f, b14 = 273 + f, b15 = 272 + 2 f."""
    folder.mkdir(parents=True, exist_ok=True)
    f = np.arange(t, dtype=np.float32)
    for band, values in ((11, 270 + f), (14, 273 + f), (15, 272 + 2 * f)):
        np.save(folder / f"band_{band}.npy", np.broadcast_to(values, (h, w, t)).astype(np.float32))
    return folder


ASH = ("band_11.npy", "band_14.npy", "band_15.npy")


def test_ash_by_hand(tmp_path: Path) -> None:
    record = write_record(tmp_path / "r")
    x = read_arrays(ArrayInputs(ASH, "ash", labelled_frame=4), record)
    # frame 4: b11 274, b14 277, b15 280: R = (3 + 4) / 6 -> clipped 1; G = (3 + 4) / 9; B = (277 - 243) / 60
    np.testing.assert_allclose(x[0, 0], [1.0, 7 / 9, 34 / 60], rtol=1e-6)
    two = read_arrays(ArrayInputs(ASH, "ash", labelled_frame=4, frames=(-4, 0)), record)
    # frame 0: b11 270, b14 273, b15 272: R = (-1 + 4) / 6, G = (3 + 4) / 9, B = 30 / 60; then frame 4
    np.testing.assert_allclose(two[1, 2], [0.5, 7 / 9, 0.5, 1.0, 7 / 9, 34 / 60], rtol=1e-6)
    assert ArrayInputs(ASH, "ash", frames=(-1, 0)).channels == 6


def test_stack_transform_and_frame_errors(tmp_path: Path) -> None:
    record = write_record(tmp_path / "r")
    arrays = ArrayInputs(("band_14.npy", "band_11.npy"), "stack", labelled_frame=4, frames=(-1, 0, 1))
    np.testing.assert_array_equal(read_arrays(arrays, record)[0, 0], [276, 277, 278, 273, 274, 275])
    assert arrays.channels == 6
    with pytest.raises(ValueError, match=r"frames \[7, 8\].*outside its 8 frames"):
        read_arrays(ArrayInputs(("band_14.npy",), "stack", labelled_frame=7, frames=(0, 1)), record)
    with pytest.raises(FileNotFoundError, match="band_16.npy"):
        read_arrays(ArrayInputs(("band_16.npy",), "stack"), record)
    with pytest.raises(ConfigError, match="reads .*band_11.npy.*in that order"):
        ArrayInputs(("band_14.npy", "band_11.npy", "band_15.npy"), "ash")
    with pytest.raises(ConfigError, match="'sum' is not one of ash, stack"):
        from_dict(ArrayInputs, {"files": ["a.npy"], "transform": "sum"})


def test_npy_label_and_sizes(tmp_path: Path) -> None:
    record = write_record(tmp_path / "r")
    mask = np.zeros((3, 4, 1), np.int32)
    mask[1, 2] = 1
    np.save(record / "human_pixel_masks.npy", mask)
    arrays = ArrayInputs(ASH, "ash", labelled_frame=4, label="human_pixel_masks.npy")
    got = read_label(arrays, record, 1)
    assert got.dtype == np.uint8 and got.shape == (3, 4, 1) and got.sum() == 1 and got[1, 2, 0] == 1
    with pytest.raises(ValueError, match="expected an H x W x 2 mask"):
        read_label(arrays, record, 2)
    spec = from_dict(
        CompetitionSpec, {"name": "c", "classes": ["contrail"], "image_ext": "", "arrays": {"files": list(ASH)}}
    )
    assert spec.image_file("1000834164244036115") == spec.image_id("1000834164244036115") == "1000834164244036115"
    assert input_size(spec, record) == (3, 4) and input_channels(spec) == 3  # stack of 3 files x 1 frame
