"""Volumes: id -> (case, slice), numeric slice order, 2.5D neighbours at the volume edges, case-grouped folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kseg.competition import CompetitionSpec
from kseg.data.folds import assign_folds
from kseg.data.volumes import VolumeSpec, neighbour_index, volume_order
from kseg.typed import ConfigError, from_dict

UW = r"^(?P<case>case(?P<patient>\d+)_day(?P<day>\d+))_slice_(?P<slice>\d+)$"


def test_keys_of_uw_ids() -> None:
    vol = VolumeSpec(UW)
    case, sl = vol.keys(["case123_day20_slice_0001", "case2_day0_slice_0144"])
    assert case.tolist() == ["case123_day20", "case2_day0"]
    assert sl.tolist() == [1, 144] and sl.dtype == np.int64
    assert vol.fields(["case123_day20_slice_0001"]).loc[0, "patient"] == "123"


def test_pattern_needs_case_and_slice_groups() -> None:
    with pytest.raises(ConfigError, match="named group 'slice'"):
        VolumeSpec(r"^(?P<case>case\d+)_(\d+)$")
    with pytest.raises(ConfigError, match="volume.pattern"):
        VolumeSpec("(")


def test_unmatched_id_and_non_numeric_slice_raise() -> None:
    with pytest.raises(ValueError, match="'case1_slice_x'"):
        VolumeSpec(UW).keys(["case1_day1_slice_1", "case1_slice_x"])
    with pytest.raises(ValueError, match="'ab' of image id 'c_ab' is not a number"):
        VolumeSpec(r"^(?P<case>\w)_(?P<slice>\w+)$").keys(["c_ab"])


def test_slice_order_is_numeric_not_string() -> None:
    ids = ["case1_day0_slice_10", "case1_day0_slice_9", "case1_day0_slice_100", "case0_day0_slice_2"]
    case, sl = VolumeSpec(UW).keys(ids)
    order = volume_order(case, sl)
    assert [ids[i] for i in order] == [ids[3], ids[1], ids[0], ids[2]]  # as strings: 10 < 100 < 9
    with pytest.raises(ValueError, match="slice 9 twice"):
        volume_order(np.array(["a", "a"], dtype=object), np.array([9, 9]))


def test_neighbours_repeat_the_edge_slice() -> None:
    # case a: slices 1..4 given shuffled; case b: one slice; offsets of context 2, stride 1
    case = np.array(["a", "b", "a", "a", "a"], dtype=object)
    sl = np.array([3, 7, 1, 4, 2])  # rows: a3, b7, a1, a4, a2
    nb = neighbour_index(case, sl, np.array([-2, -1, 0, 1, 2]))
    row = {("a", 1): 2, ("a", 2): 4, ("a", 3): 0, ("a", 4): 3, ("b", 7): 1}
    a1, a2, a3, a4 = (row["a", k] for k in (1, 2, 3, 4))
    assert nb[a1].tolist() == [a1, a1, a1, a2, a3]  # first slice: the missing ones before it repeat it
    assert nb[a2].tolist() == [a1, a1, a2, a3, a4]
    assert nb[a3].tolist() == [a1, a2, a3, a4, a4]
    assert nb[a4].tolist() == [a2, a3, a4, a4, a4]  # last slice
    assert nb[row["b", 7]].tolist() == [1] * 5  # a one-slice case stacks itself


def test_stride_skips_slices_and_gaps_use_positions() -> None:
    case = np.array(["a"] * 5, dtype=object)
    sl = np.array([10, 20, 30, 50, 60])  # slice 40 is missing: neighbours are positions in the order
    nb = neighbour_index(case, sl, VolumeSpec(UW, context=1, stride=2).offsets)
    assert VolumeSpec(UW, context=1, stride=2).offsets.tolist() == [-2, 0, 2]
    assert nb.tolist() == [[0, 0, 2], [0, 1, 3], [0, 2, 4], [1, 3, 4], [2, 4, 4]]


def spec(**kw: object) -> CompetitionSpec:
    long = {"format": "long"}
    base = {"name": "uw", "classes": ["a", "b"], "mode": "multilabel", "train": long, "submission": long}
    base["volume"] = {"pattern": UW, "context": 1}
    return from_dict(CompetitionSpec, {**base, **kw})


def test_spec_volume_yaml_and_keys() -> None:
    s = spec()
    assert s.volume == VolumeSpec(UW, context=1, stride=1) and s.volume.channels == 3
    case, sl = s.volume_keys(pd.Series(["case7_day1_slice_0012"]))
    assert case.tolist() == ["case7_day1"] and sl.tolist() == [12]
    with pytest.raises(ConfigError, match="volume.context"):
        spec(volume={"pattern": UW, "context": -1})
    with pytest.raises(ValueError, match="no competition.volume"):
        from_dict(CompetitionSpec, {"name": "x", "classes": ["a"]}).volume_keys(["a"])


def uw_ids(rng: np.random.Generator) -> list[str]:
    """Ids of 6 patients x 1-3 days x 3-9 slices."""
    out = []
    for p in range(6):
        for d in rng.choice(40, size=int(rng.integers(1, 4)), replace=False):
            out += [f"case{p}_day{d}_slice_{k:04d}" for k in range(1, int(rng.integers(3, 10)))]
    return out


@pytest.mark.parametrize("group_pattern", ["", r"^(case\d+)_"])
def test_no_case_in_two_folds(group_pattern: str) -> None:
    rng = np.random.default_rng(3)
    s = spec(group_pattern=group_pattern)
    ids = pd.Series(uw_ids(rng))
    groups = s.group_of(ids)
    folds = assign_folds(rng.integers(0, 2, size=(len(ids), 4)), 3, seed=0, groups=groups.to_numpy())
    table = pd.DataFrame({"case": s.volume_keys(ids)[0], "patient": ids.str.extract(r"^(case\d+)_")[0], "fold": folds})
    assert (table.groupby("case").fold.nunique() == 1).all()  # no volume in two folds
    if group_pattern:
        assert (table.groupby("patient").fold.nunique() == 1).all()  # every day of a patient in one fold
    assert sorted(set(folds)) == [0, 1, 2]


def test_group_pattern_must_hold_whole_cases() -> None:
    s = spec(group_pattern=r"_slice_(\d)")
    with pytest.raises(ValueError, match="splits case 'case1_day2'"):
        s.group_of(pd.Series(["case1_day2_slice_1", "case1_day2_slice_2"]))
