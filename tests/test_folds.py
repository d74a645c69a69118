from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kseg.config import load_config
from kseg.data.folds import (
    assign_folds,
    check_folds,
    fold_split,
    fold_units,
    group_folds,
    read_folds,
    stratification_targets,
    write_folds,
)

from conftest import REPO, shared_dataset


def test_targets_presence_and_area_buckets() -> None:
    labels = pd.DataFrame({"a": ["", "1 5", "1 1", ""], "b": ["", "", "3 10", "2 2"]})
    t = stratification_targets(labels, ("a", "b"))
    # areas: 0, 5, 11, 2 -> median of non-empty = 5 -> buckets empty, small, large, small
    assert t.tolist() == [[0, 0, 1, 0, 0], [1, 0, 0, 1, 0], [1, 1, 0, 0, 1], [0, 1, 0, 1, 0]]


def test_groups_never_split_and_folds_are_seeded() -> None:
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, size=(200, 4)).astype(np.int8)
    groups = np.repeat(np.arange(25), 8)
    f1 = assign_folds(targets, 5, seed=3, groups=groups)
    assert all(len(set(f1[groups == g])) == 1 for g in range(25))
    assert sorted(np.bincount(f1).tolist()) == [40] * 5
    assert np.array_equal(f1, assign_folds(targets, 5, seed=3, groups=groups))
    assert not np.array_equal(f1, assign_folds(targets, 5, seed=4, groups=groups))
    with pytest.raises(ValueError, match="data.n_folds=5 but only 3 groups"):
        assign_folds(targets[:24], 5, seed=0, groups=np.repeat(np.arange(3), 8))


SIZE_TOLERANCE = 0.05  # grouped folds: each fold within 5% of N / K images
SHARE_TOLERANCE = 0.10  # ... and each target's share of a fold within 0.10 of its share of all images


def test_groups_of_very_different_sizes_balance_images_and_targets() -> None:
    rng = np.random.default_rng(7)
    sizes = rng.integers(1, 30, 40)  # 1..29 images per group (681 in all); group-count folds: 106..170 images
    groups = np.repeat(np.arange(40), sizes)
    x = np.repeat(rng.random(40) < 0.4, sizes)  # a whole-group class (57% of the images)
    y = rng.random(len(groups)) < 0.3  # a per-image class
    targets = np.stack([x, y, ~(x | y), x | y], axis=1).astype(np.int8)
    for seed in range(4):
        folds = assign_folds(targets, 5, seed=seed, groups=groups)
        assert all(len(set(folds[groups == g])) == 1 for g in range(40))
        n = np.bincount(folds, minlength=5)
        assert np.abs(n - len(groups) / 5).max() <= SIZE_TOLERANCE * len(groups) / 5, (seed, n)
        share = np.stack([targets[folds == k].mean(axis=0) for k in range(5)])
        assert np.abs(share - targets.mean(axis=0)).max() <= SHARE_TOLERANCE, (seed, share.round(3))
    assert np.array_equal(assign_folds(targets, 5, 1, groups), assign_folds(targets, 5, 1, groups))
    assert not np.array_equal(assign_folds(targets, 5, 1, groups), assign_folds(targets, 5, 2, groups))


def test_group_folds_by_hand() -> None:
    # sizes 5, 3, 2, 2 into 2 folds (cap 6): 5 -> fold 0; 3 -> fold 1; one 2 -> fold 1 (5 + 2 > 6); the other
    # fits nowhere -> the fold with the fewest images (5 = 5: the lower index): {5, 2} and {3, 2} = 7 / 5
    sizes = np.array([5, 3, 2, 2])
    for seed in range(5):
        f = group_folds(np.zeros((4, 1), np.int64), sizes, 2, seed)
        assert f[:2].tolist() == [0, 1] and f[2] != f[3] and np.bincount(f, weights=sizes).tolist() == [7, 5]
    # four equal groups, two of them with class x: x ends in both folds whichever group comes first
    counts = np.array([[2, 0], [0, 2], [2, 0], [0, 2]])  # [x images, not-x images] of groups 0..3
    for seed in range(20):
        f = group_folds(counts, np.full(4, 2), 2, seed)
        assert f[0] != f[2] and f[1] != f[3], (seed, f)


def test_fold_units_counts_groups_or_images(demo_cfg, tmp_path: Path) -> None:
    from kseg.demo.registry import write_miniature

    assert fold_units(demo_cfg) == (24, "images")
    root = write_miniature("streets", tmp_path / "s", seed=0, n_train=7, n_test=1, frames=3)  # 3 + 3 + 1 frames
    cfg = load_config(REPO / "configs/streets/unet-mobilenetv2.yaml", [f"data.root={root}"])
    assert fold_units(cfg) == (3, "groups")


def test_write_folds_demo_refuses_overwrite(demo_cfg) -> None:
    folds, table = write_folds(demo_cfg)
    assert demo_cfg.folds_path.is_file()
    on_disk = pd.read_csv(demo_cfg.folds_path)
    assert list(on_disk.columns) == ["ImageId", "fold"] and len(on_disk) == 24
    assert sorted(on_disk.fold.unique().tolist()) == [0, 1, 2]
    assert table.iloc[-1]["images"] == 24
    with pytest.raises(FileExistsError, match="--force"):
        write_folds(demo_cfg)
    write_folds(demo_cfg, force=True)
    assert read_folds(demo_cfg).equals(pd.DataFrame({"image_id": on_disk.ImageId.astype(str), "fold": on_disk.fold}))
    train, val = fold_split(demo_cfg, 1)
    assert set(train) | set(val) == set(on_disk.ImageId) and not set(train) & set(val)
    with pytest.raises(ValueError, match="fold 7 is not in"):
        fold_split(demo_cfg, 7)


def test_missing_folds_file_says_what_to_run(demo_cfg) -> None:
    with pytest.raises(FileNotFoundError, match="run `kseg folds"):
        read_folds(demo_cfg)


def test_tgs_empty_share_per_fold_within_one_point(tmp_path: Path) -> None:
    root = shared_dataset("tgs-salt")
    cfg = load_config(
        REPO / "configs/tgs-salt/unet-r34.yaml", [f"data.root={root}", f"data.folds_csv={tmp_path}/folds.csv"]
    )
    folds, table = write_folds(cfg)
    overall = table.iloc[-1]["empty%"]
    assert 35 < overall < 43
    per_fold = table.iloc[:-1]["empty%"].astype(float)
    assert (per_fold - overall).abs().max() <= 1.0, table.to_string()
    sizes = table.iloc[:-1]["images"].astype(int)
    assert sizes.max() - sizes.min() <= 2


def test_read_only_data_folder_gets_local_folds_file(demo_root: Path, tmp_path: Path, monkeypatch) -> None:
    import shutil

    ro = tmp_path / "ro"
    shutil.copytree(demo_root, ro)
    ro.chmod(0o555)
    monkeypatch.chdir(tmp_path)
    try:
        cfg = load_config(REPO / "configs/demo.yaml", [f"data.root={ro}"])
        assert cfg.folds_path == Path("input/demo/folds.csv")
        write_folds(cfg)
        assert (tmp_path / "input/demo/folds.csv").is_file() and not (ro / "folds.csv").exists()
    finally:
        ro.chmod(0o755)


def test_check_folds_stale_ids_skip_mode_and_pseudo_images(demo_cfg, caplog) -> None:
    write_folds(demo_cfg)
    folds = read_folds(demo_cfg)
    ids = folds.image_id.tolist()
    labels = pd.DataFrame({"image_id": ids, "source": "train"})
    pseudo = pd.DataFrame({"image_id": ["test1.jpg", "test2.jpg"], "source": "pseudo"})
    with_pseudo = pd.concat([labels, pseudo], ignore_index=True)
    assert check_folds(folds, with_pseudo, demo_cfg).equals(folds)  # pseudo images need no fold
    train, val = fold_split(demo_cfg, 0, with_pseudo)
    assert train[-2:] == ["test1.jpg", "test2.jpg"] and not {"test1.jpg", "test2.jpg"} & set(val)  # training only
    with pytest.raises(ValueError, match=rf"row 2: image '{ids[0]}' is not a training image .* \(1 such rows\)"):
        check_folds(folds, labels.iloc[1:], demo_cfg)
    with pytest.raises(ValueError, match=rf"training image '{ids[0]}' of .* has no fold \(1 images missing\)"):
        check_folds(folds.iloc[1:], labels, demo_cfg)
    skip = demo_cfg.replace(data=dataclasses.replace(demo_cfg.data, on_bad_image="skip"))
    with caplog.at_level("WARNING", logger="kseg.data.folds"):
        kept = check_folds(folds, labels.iloc[1:], skip)  # an image whose file is gone: dropped, logged
    assert kept.image_id.tolist() == ids[1:] and "skipping 1 image(s)" in caplog.text
