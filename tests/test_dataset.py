from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kseg.config import load_config
from kseg.data.dataset import SegDataset, decode_masks, make_loader, read_labels
from kseg.data.images import ImageReadError
from kseg.data.pixels import IMAGENET_MEAN, IMAGENET_STD, model_input
from kseg.data.rle import KAGGLE, decode

from conftest import REPO, shared_dataset


def test_demo_items_match_csv(demo_cfg) -> None:
    labels = read_labels(demo_cfg)
    assert len(labels) == 24 and list(labels.columns[1:5]) == list(demo_cfg.competition.classes)
    row = labels[(labels[list(demo_cfg.competition.classes)] != "").any(axis=1)].iloc[0]
    ds = SegDataset(demo_cfg, [row.image_id], labels)
    item = ds[0]
    assert item["image"].shape == (3, 128, 256) and item["image"].dtype == torch.uint8  # normalised on the device
    assert item["mask"].shape == (4, 128, 256) and item["mask"].dtype == torch.uint8  # 0/1, float on the device
    assert item["size"].tolist() == [128, 256] and item["id"] == row.image_id
    for c, name in enumerate(demo_cfg.competition.classes):
        assert np.array_equal(item["mask"][c].numpy(), decode(row[name], (128, 256)).astype(np.float32))
    # imagenet normalisation: un-normalising gives pixels in [0, 1]
    x = model_input(item["image"][None], demo_cfg.data.normalize)[0]
    raw = x.numpy().transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5


def test_train_augment_moves_image_and_mask_together(demo_cfg) -> None:
    cfg = demo_cfg.replace(data=demo_cfg.data.__class__(**{**demo_cfg.data.__dict__, "augment": ()}))
    labels = read_labels(cfg)
    rid = labels[(labels[list(cfg.competition.classes)] != "").any(axis=1)].image_id.iloc[0]
    plain = SegDataset(cfg, [rid], labels)[0]
    flip_cfg = load_config(
        REPO / "configs/demo.yaml",
        [f"data.root={cfg.data.root}", "data.augment=[{name: HorizontalFlip, params: {p: 1.0}}]"],
    )
    flipped = SegDataset(flip_cfg, [rid], labels, train=True)[0]
    assert torch.allclose(flipped["image"], plain["image"].flip(-1))
    assert torch.equal(flipped["mask"], plain["mask"].flip(-1))
    assert not torch.equal(flipped["mask"], plain["mask"])  # the probe is not symmetric


def test_pad_mode_on_real_tgs(tmp_path: Path) -> None:
    root = shared_dataset("tgs-salt")
    cfg = load_config(REPO / "configs/tgs-salt/unet-r34.yaml", [f"data.root={root}"])
    labels = read_labels(cfg)
    rid = labels[labels.salt != ""].image_id.iloc[0]
    item = SegDataset(cfg, [rid], labels)[0]
    assert item["image"].shape == (3, 128, 128) and item["size"].tolist() == [101, 101]
    from kseg.data.images import read_mask

    assert np.array_equal(item["mask"][0, 13:114, 13:114].numpy(), read_mask(root / "train/masks" / f"{rid}.png"))


def test_loader_batches(demo_cfg) -> None:
    labels = read_labels(demo_cfg)
    ds = SegDataset(demo_cfg, labels.image_id.tolist()[:10], labels, train=True)
    batch = next(iter(make_loader(ds, demo_cfg, train=True, generator=torch.Generator().manual_seed(0))))
    assert batch["image"].shape == (8, 3, 128, 256) and batch["mask"].shape == (8, 4, 128, 256)


def test_bad_files_error_or_skip(demo_root: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(demo_root, root)
    names = sorted(p.name for p in (root / "train_images").iterdir())
    (root / "train_images" / names[0]).unlink()
    (root / "train_images" / names[1]).write_bytes(b"")
    cfg = load_config(REPO / "configs/demo.yaml", [f"data.root={root}"])
    labels = pd.DataFrame({"image_id": names[:4], **{c: [""] * 4 for c in cfg.competition.classes}})
    with pytest.raises(ImageReadError, match=names[0]):
        SegDataset(cfg, names[:4], labels)
    cfg_skip = load_config(REPO / "configs/demo.yaml", [f"data.root={root}", "data.on_bad_image=skip"])
    ds = SegDataset(cfg_skip, names[:4], labels)
    assert ds.ids == names[2:4] and len(ds.skipped) == 2


def test_mask_past_image_names_id_and_size() -> None:
    with pytest.raises(ValueError, match=r"image 'x.png' class 1: mask does not fit the 4x4 image"):
        decode_masks(["", "15 5"], (4, 4), "x.png", KAGGLE)


def test_truncated_jpeg_error_or_skipped_batch(demo_root: Path, tmp_path: Path) -> None:
    import shutil

    from kseg.data.dataset import collate_skip_bad

    root = tmp_path / "copy"
    shutil.copytree(demo_root, root)
    names = sorted(p.name for p in (root / "train_images").iterdir())[:3]
    bad = root / "train_images" / names[1]
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])  # truncated JPEG
    cfg = load_config(REPO / "configs/demo.yaml", [f"data.root={root}"])
    labels = pd.DataFrame({"image_id": names, **{c: [""] * 3 for c in cfg.competition.classes}})
    with pytest.raises(ImageReadError, match=names[1]):
        SegDataset(cfg, names, labels)[1]
    cfg_skip = load_config(
        REPO / "configs/demo.yaml", [f"data.root={root}", "data.on_bad_image=skip", "data.num_workers=0"]
    )
    ds = SegDataset(cfg_skip, names, labels)
    assert ds[1] is None
    batch = collate_skip_bad([ds[i] for i in range(3)])
    assert batch["image"].shape[0] == 2 and batch["skipped"] == 1 and batch["id"] == [names[0], names[2]]
    loader = make_loader(ds, cfg_skip, train=False)
    assert sum(b["image"].shape[0] for b in loader) == 2


def test_jpeg_draft_items_keep_the_native_size_and_masks(tmp_path: Path) -> None:
    from kseg.demo.registry import write_miniature

    root = write_miniature("carvana", tmp_path / "carvana", n_train=1, n_test=0)
    overrides = [f"data.root={root}", "data.image_size=[128, 128]"]
    full_cfg = load_config(REPO / "configs/carvana/unet128.yaml", overrides)
    draft_cfg = load_config(REPO / "configs/carvana/unet128.yaml", [*overrides, "data.jpeg_draft=true"])
    labels = read_labels(full_cfg)
    ids = list(labels.image_id[:2])
    full, draft = SegDataset(full_cfg, ids, labels)[1], SegDataset(draft_cfg, ids, labels)[1]
    assert draft["size"].tolist() == full["size"].tolist() == [1280, 1918]  # restore and truth use the file's size
    assert torch.equal(draft["mask"], full["mask"]) and draft["mask"].sum() > 0  # masks come from the RLE
    diff = (draft["image"].int() - full["image"].int()).abs()
    assert draft["image"].shape == (3, 128, 128) and 0 < diff.float().mean() < 0.5
    pad_cfg = load_config(
        REPO / "configs/carvana/unet128.yaml", [*overrides, "data.jpeg_draft=true", "data.resize=pad"]
    )
    assert SegDataset(pad_cfg, ids, labels).reader.draft is None  # padding keeps every pixel: no draft
