"""UW-Madison GI Tract miniature vs the real layout; 2.5D dataset, model, TTA and per-image sizes on it.

Real facts (see the README's "What the miniatures do not reproduce" for the rest): ``train.csv`` =
``id,class,segmentation`` with all 3 rows per slice (large_bowel, small_bowel, stomach), empty cells for
absent organs, ``id = case<N>_day<M>_slice_<kkkk>``; files ``train/case<N>/case<N>_day<M>/scans/
slice_<kkkk>_<width>_<height>_<spacing>_<spacing>.png``, 16-bit gray; RLEs row-major
(``tests/fixtures/rle_real.json``); submission ``id,class,predicted``; the hidden test set holds later days of
training patients and unseen patients.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from kseg.competition import list_test_ids, read_csv, read_train_labels
from kseg.config import load_config
from kseg.data.dataset import SegDataset
from kseg.data.folds import make_folds
from kseg.data.inputs import ImagePaths
from kseg.demo.registry import MINIATURES, write_miniature
from kseg.demo.uwmgi import UW_CLASSES
from kseg.infer.stream import restore_batch
from kseg.models import build_model
from kseg.tta import get_tta

from conftest import REPO
from rle_reference import PUBLISHED, published_encoder, ref_decode

NAME = re.compile(r"slice_(\d{4})_(\d+)_(\d+)_(1\.50|1\.63)_(1\.50|1\.63)\.png")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_miniature("uwmgi", tmp_path_factory.mktemp("uw"), seed=0, encode=published_encoder("uwmgi"))


def cfg_of(root: Path, tmp: Path, *overrides: str):
    mini = MINIATURES.get("uwmgi")
    return load_config(REPO / mini.config, [*mini.fast, f"data.root={root}", f"data.folds_csv={tmp}/f.csv", *overrides])


def test_files_are_16_bit_slices_named_by_width_height_spacing(root: Path) -> None:
    files = sorted((root / "train").rglob("*.png"))
    assert files and all(NAME.fullmatch(f.name) for f in files)
    sizes = set()
    for f in files:
        assert re.fullmatch(r"case\d+/case\d+_day\d+/scans", str(f.parent.relative_to(root / "train")))
        pixels = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        _, width, height, _, _ = NAME.fullmatch(f.name).groups()
        assert pixels.dtype == np.uint16 and pixels.shape == (int(height), int(width))  # width first in the name
        sizes.add(pixels.shape)
    assert len(sizes) >= 3 and (310, 360) in sizes  # sizes differ between scans (360x310 is W x H)


def test_train_csv_lists_every_slice_x_class_row_major(root: Path) -> None:
    assert (root / "train.csv").read_bytes().startswith(b"id,class,segmentation\n")
    df = read_csv(root / "train.csv")
    assert df["class"].tolist() == list(UW_CLASSES) * (len(df) // 3)  # 3 rows per slice in that order
    assert (df.segmentation == "").any() and (df.segmentation != "").any()
    assert df.id.str.fullmatch(r"case\d+_day\d+_slice_\d{4}").all()
    spec = cfg_of(root, root).competition
    paths = ImagePaths(spec, root / "train")
    for row in df[df.segmentation != ""].itertuples():
        size = cv2.imread(str(paths(row.id)), cv2.IMREAD_UNCHANGED).shape
        want = ref_decode(row.segmentation, size, **PUBLISHED["uwmgi"])  # the independent row-major reference
        assert want.any() and np.array_equal(spec.rle.decode(row.segmentation, size), want), row.id
        assert spec.rle.encode(want) == row.segmentation


def test_spec_reads_labels_and_test_holds_whole_scans(root: Path, tmp_path: Path) -> None:
    spec = cfg_of(root, tmp_path).competition
    labels = read_train_labels(spec, root)
    df = read_csv(root / "train.csv")
    assert labels.image_id.tolist() == list(dict.fromkeys(df.id))
    mask = spec.rle.decode(labels.loc[labels.stomach != "", "stomach"].iloc[0], (310, 360))
    assert mask.dtype == np.uint8  # decodes in the spec's dialect (sizes checked by the dataset below)
    test = list_test_ids(spec, root)
    assert (root / "sample_submission.csv").read_bytes().startswith(b"id,class,predicted\n")
    train_case, _ = spec.volume_keys(labels.image_id)
    test_case, _ = spec.volume_keys(test)
    assert not set(train_case) & set(test_case)  # test scans are whole, never in train
    patient = lambda cases: {c.split("_")[0] for c in cases}  # noqa: E731
    assert patient(test_case) & patient(train_case)  # a later day of a training patient (split by time)
    assert patient(test_case) - patient(train_case)  # and an unseen patient (split by case)


def test_folds_keep_patients_and_scans_whole(root: Path, tmp_path: Path) -> None:
    cfg = cfg_of(root, tmp_path)
    folds, _ = make_folds(cfg)
    case, _ = cfg.competition.volume_keys(folds.image_id)
    table = pd.DataFrame({"case": case, "patient": [c.split("_")[0] for c in case], "fold": folds.fold})
    assert (table.groupby("case").fold.nunique() == 1).all()
    assert (table.groupby("patient").fold.nunique() == 1).all()
    assert table.fold.nunique() == 2


def test_dataset_stacks_neighbours_two_slices_apart(root: Path, tmp_path: Path) -> None:
    spec = cfg_of(root, tmp_path).competition
    labels = read_train_labels(spec, root)
    case, _ = spec.volume_keys(labels.image_id)
    scan = labels.image_id[case == case[0]].tolist()  # slices 1..n in order
    paths = ImagePaths(spec, root / "train")
    plane = [cv2.imread(str(paths(i)), cv2.IMREAD_UNCHANGED).astype(np.float32) / 65535 for i in scan]
    h, w = plane[0].shape
    cfg = cfg_of(root, tmp_path, f"data.image_size=[{h}, {w}]", "data.normalize=unit")
    ds = SegDataset(cfg, scan[::-1], labels)  # any order: neighbours follow the slice numbers
    n = len(scan)
    for k, want in ((0, (0, 0, 2)), (3, (1, 3, 5)), (n - 1, (n - 3, n - 1, n - 1))):
        item = ds[n - 1 - k]
        assert item["id"] == scan[k] and tuple(item["size"].tolist()) == (h, w)
        assert item["image"].shape == (3, h, w) and item["mask"].shape == (3, h, w)
        for ch, j in enumerate(want):
            np.testing.assert_allclose(item["image"][ch].numpy(), plane[j], atol=1e-6)


def test_model_takes_the_stacked_channels_and_d4_tta_round_trips(root: Path, tmp_path: Path) -> None:
    cfg = cfg_of(root, tmp_path, "competition.volume.context=2")
    model = build_model(cfg).eval()
    x = torch.rand(1, 5, 64, 64)
    with torch.no_grad():
        base = model(x)["mask"]
        assert base.shape == (1, 3, 64, 64)
        assert model.net.encoder.conv1.in_channels == 5  # smp's first conv takes the 2 * 2 + 1 slices
        for pair in get_tta("d4"):
            assert pair.augment(x).shape[1] == 5  # every view moves all stacked slices together
            assert pair.deaugment(model(pair.augment(x))["mask"]).shape == base.shape
    centre = lambda t: t[:, 2:3].repeat(1, 3, 1, 1)  # noqa: E731 - an exactly equivariant "model"
    for pair in get_tta("d4"):
        assert torch.equal(pair.deaugment(centre(pair.augment(x))), centre(x)), pair.name


def test_predictions_restored_to_each_images_own_size(root: Path, tmp_path: Path) -> None:
    cfg = cfg_of(root, tmp_path)
    probs = torch.zeros(2, 3, 64, 64)
    probs[:, :, :, :32] = 1  # left half: an asymmetric probe
    sizes = torch.tensor([[310, 360], [234, 234]])
    out = restore_batch(probs, sizes, cfg)
    assert [tuple(o.shape) for o in out] == [(3, 310, 360), (3, 234, 234)]
    for o, (_, w) in zip(out, sizes.tolist(), strict=True):
        edge = w // 64 + 1  # bilinear blends one model pixel (w / 64 image pixels) across the probe's edge
        assert (o[:, :, : w // 2 - edge] > 0.99).all() and (o[:, :, w // 2 + edge :] < 0.01).all()
    oof = restore_batch(probs, sizes, cfg, oof=True)  # OOF and tuning: competition.oof_size
    assert [tuple(o.shape) for o in oof] == [(3, *cfg.competition.oof_size)] * 2


def test_validate_checks_each_rle_at_its_slices_own_size(root: Path, tmp_path: Path) -> None:
    from kseg.submission.validate import validate_submission

    cfg = cfg_of(root, tmp_path)
    paths = ImagePaths(cfg.competition, root / "test")
    sub = read_csv(root / "sample_submission.csv")
    sizes = [cv2.imread(str(paths(i)), cv2.IMREAD_UNCHANGED).shape for i in sub.id]
    assert len(set(sizes)) > 1  # the test scans differ in size
    sub["predicted"] = [f"1 {h * w}" for h, w in sizes]  # every pixel of each slice: fits exactly
    sub.to_csv(tmp_path / "ok.csv", index=False)
    report = validate_submission(tmp_path / "ok.csv", cfg)
    assert report.ok, report.problems[:3]
    sub.loc[0, "predicted"] = f"1 {sizes[0][0] * sizes[0][1] + 1}"  # one pixel past that slice's end
    sub.to_csv(tmp_path / "bad.csv", index=False)
    problems = validate_submission(tmp_path / "bad.csv", cfg).problems
    assert len(problems) == 1 and "row 2" in problems[0], problems
