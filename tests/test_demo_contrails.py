"""Identify Contrails miniature vs the real layout; the ash input and the .npy labels read through the spec.

Real facts (Kaggle data and evaluation pages, see tests/fixtures/rle_real.json "Identify Contrails"): per record
``band_{08..16}.npy`` [H, W, T] brightness temperatures, T = n_times_before + n_times_after + 1 = 4 + 3 + 1,
the label of frame n_times_before; ``human_pixel_masks.npy`` [H, W, 1] (a pixel counts when more than half of
the labellers marked it), ``human_individual_masks.npy`` [H, W, 1, R] in train only; validation has only the
pixel masks; submission ``record_id,encoded_pixels``, column-major 1-based RLE, ``-`` for an empty mask.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from kseg.competition import list_test_ids, read_csv, read_train_labels
from kseg.config import load_config
from kseg.data.dataset import SegDataset
from kseg.data.pixels import IMAGENET_MEAN, IMAGENET_STD, model_input
from kseg.demo.contrails import BANDS
from kseg.demo.registry import MINIATURES, write_miniature

from conftest import REPO
from rle_reference import PUBLISHED, published_encoder, ref_decode, ref_encode


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_miniature("contrails", tmp_path_factory.mktemp("c"), seed=0, encode=published_encoder("contrails"))


def cfg_of(root: Path, tmp: Path, *overrides: str):
    mini = MINIATURES.get("contrails")
    return load_config(REPO / mini.config, [*mini.fast, f"data.root={root}", f"data.folds_csv={tmp}/f.csv", *overrides])


def test_record_folders_hold_the_bands_and_masks(root: Path) -> None:
    for split in ("train", "validation", "test"):
        records = sorted(p for p in (root / split).iterdir())
        assert records and all(re.fullmatch(r"[1-9]\d{18}", p.name) for p in records)
        for rec in records:
            names = sorted(p.name for p in rec.iterdir())
            bands = [f"band_{b:02d}.npy" for b in BANDS]
            masks = {"train": ["human_individual_masks.npy", "human_pixel_masks.npy"]}
            masks["validation"] = ["human_pixel_masks.npy"]
            assert names == sorted(bands + masks.get(split, [])), (split, names)
            b = np.load(rec / "band_14.npy")
            assert b.dtype == np.float32 and b.shape == (64, 64, 8) and 200 < b.mean() < 320  # kelvin
            if split == "train":
                pixel, each = np.load(rec / "human_pixel_masks.npy"), np.load(rec / "human_individual_masks.npy")
                assert pixel.shape == (64, 64, 1) and each.shape[:3] == (64, 64, 1) and each.shape[3] >= 4
                assert np.array_equal(pixel[..., 0], each[..., 0, :].sum(-1) * 2 > each.shape[3])  # majority


def test_sample_submission_is_the_real_format(root: Path) -> None:
    text = (root / "sample_submission.csv").read_text()
    lines = text.splitlines()
    assert lines[0] == "record_id,encoded_pixels"
    assert lines[1].endswith(",1 1 5 1") and lines[2].endswith(",-")
    spec = cfg_of(root, root).competition
    assert list_test_ids(spec, root) == [line.split(",")[0] for line in lines[1:]]
    assert sorted(list_test_ids(spec, root)) == sorted(p.name for p in (root / "test").iterdir())


def test_npy_labels_read_as_rles_of_the_published_dialect(root: Path, tmp_path: Path) -> None:
    spec = cfg_of(root, tmp_path).competition
    labels = read_train_labels(spec, root)
    records = sorted(p.name for p in (root / "train").iterdir())
    assert labels.image_id.tolist() == records  # no train csv: one row per record folder
    assert (labels.contrail != "").any() and (labels.contrail == "").any()
    for rec, rle in zip(labels.image_id, labels.contrail, strict=True):
        mask = np.load(root / "train" / rec / "human_pixel_masks.npy")[..., 0]
        want = ref_encode(mask, **PUBLISHED["contrails"])  # '-' when empty; the labels table holds ''
        assert rle == ("" if want == "-" else want)
        assert np.array_equal(ref_decode(rle, mask.shape, **PUBLISHED["contrails"]), mask > 0)
    empty = np.zeros((64, 64), np.uint8)
    assert spec.rle.encode(empty) == "-" == ref_encode(empty, **PUBLISHED["contrails"])  # what a submission writes
    assert read_csv(root / "sample_submission.csv").encoded_pixels.iloc[1] == spec.rle.empty


def test_dataset_input_is_the_ash_false_colour_of_frame_4(root: Path, tmp_path: Path) -> None:
    cfg = cfg_of(root, tmp_path, "data.image_size=[64, 64]")
    labels = read_train_labels(cfg.competition, root)
    ds = SegDataset(cfg, labels.image_id.tolist(), labels)
    item = ds[0]
    rec = root / "train" / labels.image_id[0]
    b11, b14, b15 = (np.load(rec / f"band_{b}.npy")[..., 4] for b in (11, 14, 15))
    ash = np.clip(np.stack([(b15 - b14 + 4) / 6, (b14 - b11 + 4) / 9, (b14 - 243) / 60], axis=-1), 0, 1)
    want = ((ash - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    x = model_input(item["image"][None], cfg.data.normalize)[0]  # normalised on the device
    np.testing.assert_allclose(x.numpy(), want, atol=1e-5)
    mask = np.load(rec / "human_pixel_masks.npy")[..., 0]
    assert np.array_equal(item["mask"][0].numpy(), mask)  # the label of that same frame
