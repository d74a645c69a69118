"""Miniature competitions vs the real layouts: folders, file names, id formats, image formats and sizes,
csv columns and row conventions, line endings; plus the shipped seed-recipe configs (``kseg demo`` itself:
test_commands_demo.py)."""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from kseg.competition import list_test_ids, read_csv, read_train_labels
from kseg.config import load_config
from kseg.data.rle import decode, rle_area, validate_rle
from kseg.demo.carvana import carvana_angles
from kseg.demo.clouds import CLOUD_LABELS
from kseg.demo.registry import MINIATURES, write_miniature
from kseg.demo.streets import STREET_CLASSES

from conftest import REPO, shared_dataset
from rle_reference import PUBLISHED, published_encoder, ref_decode

ALL = MINIATURES.names()
FLAT = [n for n in ALL if n not in ("uwmgi", "contrails")]  # one image file per id (the others: their own tests)


def raw(path: Path) -> np.ndarray:
    """Pixels as stored (dtype and channel count of the file), None-safe."""
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert pixels is not None, path
    return pixels


def read_rgb(path: Path) -> np.ndarray:
    """float32 [H, W, 3] in [0, 1] of an image or (``.tiff``) a whole slide."""
    if path.suffix == ".tiff":
        from kseg.data.slides import Slide

        with Slide(path) as slide:
            return slide.read(0, 0, *slide.size).astype(np.float32) / 255.0
    from kseg.data.images import read_image

    return read_image(path)


def header(path: Path) -> bytes:
    """First line of a csv including its line end."""
    with open(path, "rb") as f:
        return f.readline()


def spec_cfg(name: str, root: Path, tmp_path: Path, *overrides: str):
    mini = MINIATURES.get(name)
    return load_config(
        REPO / mini.config, [f"data.root={root}", f"data.folds_csv={tmp_path / 'folds.csv'}", *overrides]
    )


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every miniature at its end-to-end-test size, written once (seed 0)."""
    base = tmp_path_factory.mktemp("mini")
    return {
        n: write_miniature(n, base / n, seed=0, encode=published_encoder(n), **MINIATURES.get(n).small) for n in ALL
    }


# --------------------------------------------------------------------------- every miniature


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", ALL)
def test_deterministic_per_seed(name: str, small: dict[str, Path], tmp_path: Path) -> None:
    kwargs = MINIATURES.get(name).small
    again = write_miniature(name, tmp_path / "a", seed=0, **kwargs)  # the shipped spec's own dialect
    other = write_miniature(name, tmp_path / "b", seed=1, **kwargs)
    assert digest(again) == digest(small[name]) != digest(other)  # ... writes what the published one does


@pytest.mark.parametrize("name", FLAT)
def test_reads_with_the_shipped_config_and_is_learnable(name: str, small: dict[str, Path], tmp_path: Path) -> None:
    """The shipped config's spec reads the miniature; every class occurs; classes differ in colour from the rest."""
    cfg = spec_cfg(name, small[name], tmp_path)
    spec = cfg.competition
    labels = read_train_labels(spec, small[name])
    n_train = len([p for p in (small[name] / spec.train_images).iterdir() if p.name.endswith(spec.image_ext)])
    assert (
        len(labels)
        == n_train
        == MINIATURES.get(name).small.get("n_train", n_train) * (len(carvana_angles(4)) if name == "carvana" else 1)
    )
    test_ids = list_test_ids(spec, small[name])
    assert sorted(spec.image_file(i) for i in test_ids) == sorted(
        p.name for p in (small[name] / spec.test_images).iterdir() if p.name.endswith(spec.image_ext)
    )
    for c in spec.classes:
        assert (labels[c] != "").any(), f"{name}: class {c} never occurs"
    inside = np.zeros((spec.num_classes, 3))
    outside = np.zeros((spec.num_classes, 3))
    count = np.zeros((spec.num_classes, 2))
    for _, row in labels.iterrows():
        image = read_rgb(small[name] / spec.train_images / spec.image_file(row.image_id))
        for c, cls in enumerate(spec.classes):
            if row[cls]:
                m = spec.rle.decode(row[cls], image.shape[:2]).astype(bool)
                inside[c] += image[m].sum(0)
                outside[c] += image[~m].sum(0)
                count[c] += (m.sum(), (~m).sum())
    contrast = np.abs(inside / count[:, :1] - outside / np.maximum(count[:, 1:], 1)).max(axis=1) * 255
    assert (contrast > 12).all(), f"{name}: mean colour inside vs outside each class {contrast.round(1)}"


@pytest.mark.parametrize("name", FLAT)
def test_csv_masks_read_as_the_competition_publishes_them(name: str, small: dict[str, Path], tmp_path: Path) -> None:
    """csvs written by the published reference encoder decode to the same masks through the spec's dialect,
    and kseg's encoder writes the very same strings back (so kseg's submissions use the competition's order)."""
    cfg = spec_cfg(name, small[name], tmp_path)
    spec = cfg.competition
    labels = read_train_labels(spec, small[name])
    checked = 0
    for _, row in labels.iterrows():
        size = read_rgb(small[name] / spec.train_images / spec.image_file(row.image_id)).shape[:2]
        for cls in spec.classes:
            if row[cls]:
                truth = ref_decode(row[cls], size, **PUBLISHED[name])
                assert np.array_equal(spec.rle.decode(row[cls], size), truth), (name, row.image_id, cls)
                assert spec.rle.encode(truth) == row[cls]
                checked += 1
    assert checked >= spec.num_classes


# --------------------------------------------------------------------------- severstal


def test_severstal_layout(small: dict[str, Path]) -> None:
    root = small["severstal"]
    files = sorted(p.name for p in (root / "train_images").iterdir())
    assert all(re.fullmatch(r"[0-9a-f]{9}\.jpg", f) for f in files) and len(files) == 8
    img = raw(root / "train_images" / files[0])
    assert img.shape == (256, 1600, 3) and img.dtype == np.uint8
    assert (root / "train_images" / files[0]).read_bytes()[:3] == b"\xff\xd8\xff"
    train = read_csv(root / "train.csv")
    assert list(train.columns) == ["ImageId", "ClassId", "EncodedPixels"]
    assert (train.EncodedPixels != "").all() and set(train.ClassId) <= {"1", "2", "3", "4"}  # only non-empty rows
    assert set(train.ImageId) < set(files)  # images without defects have no row
    assert all(validate_rle(r, (256, 1600)) == [] for r in train.EncodedPixels)
    sample = read_csv(root / "sample_submission.csv")
    assert header(root / "sample_submission.csv") == b"ImageId,EncodedPixels,ClassId\n"  # that column order
    tests = sorted(p.name for p in (root / "test_images").iterdir())
    assert sample.ImageId.tolist() == [t for t in tests for _ in range(4)]
    assert sample.ClassId.tolist() == ["1", "2", "3", "4"] * len(tests)


# --------------------------------------------------------------------------- carvana


def test_carvana_layout_sixteen_angles_gif_masks(tmp_path: Path) -> None:
    root = write_miniature(
        "carvana",
        tmp_path / "c",
        seed=2,
        n_train=1,
        n_test=1,  # 16 angles per car
        encode=published_encoder("carvana"),
    )
    files = sorted(p.name for p in (root / "train").iterdir())
    m = [re.fullmatch(r"([0-9a-f]{12})_(\d\d)\.jpg", f) for f in files]
    assert all(m) and len({x.group(1) for x in m}) == 1
    assert [x.group(2) for x in m] == [f"{a:02d}" for a in range(1, 17)]
    img = raw(root / "train" / files[0])
    assert img.shape == (1280, 1918, 3) and img.dtype == np.uint8  # W x H = 1918 x 1280
    masks = sorted(p.name for p in (root / "train_masks").iterdir())
    assert masks == [f.replace(".jpg", "_mask.gif") for f in files]
    gif = root / "train_masks" / masks[3]
    assert gif.read_bytes()[:6] in (b"GIF87a", b"GIF89a")
    from PIL import Image

    with Image.open(gif) as im:
        assert im.size == (1918, 1280) and im.mode == "P"
    table = read_csv(root / "train_masks.csv")
    assert list(table.columns) == ["img", "rle_mask"] and table.img.tolist() == files
    from kseg.data.images import read_mask

    mask = read_mask(gif)  # csv and GIF agree under Carvana's row order, read by the spec's dialect
    spec = load_config(REPO / "configs/carvana/unet128.yaml").competition
    assert np.array_equal(mask, ref_decode(table.rle_mask[3], (1280, 1918), order="row"))
    assert np.array_equal(mask, spec.rle.decode(table.rle_mask[3], (1280, 1918))) and 0.05 < mask.mean() < 0.5
    assert not np.array_equal(mask, decode(table.rle_mask[3], (1280, 1918)))  # column order scrambles it
    sample = read_csv(root / "sample_submission.csv")
    assert list(sample.columns) == ["img", "rle_mask"] and len(sample) == 16
    assert sample.img.tolist() == sorted(p.name for p in (root / "test").iterdir())
    meta = read_csv(root / "metadata.csv")
    assert list(meta.columns) == ["id", "year", "make", "model", "trim1", "trim2"] and len(meta) == 2


def test_carvana_angle_subsets() -> None:
    assert carvana_angles(16) == list(range(1, 17))
    assert carvana_angles(4) == [1, 5, 9, 13] and carvana_angles(2) == [1, 9]
    assert carvana_angles([16, 3, 3]) == [3, 16]
    with pytest.raises(ValueError):
        carvana_angles(17)
    with pytest.raises(ValueError):
        carvana_angles([0, 2])


def test_carvana_cars_stay_in_one_fold(tmp_path: Path) -> None:
    from kseg.data.folds import make_folds

    root = write_miniature("carvana", tmp_path / "c", seed=0, n_train=4, n_test=0, angles=2)
    folds, _ = make_folds(spec_cfg("carvana", root, tmp_path, "data.n_folds=2"))
    car = folds.image_id.str[:12]
    assert folds.groupby(car).fold.nunique().eq(1).all() and folds.fold.nunique() == 2


# --------------------------------------------------------------------------- clouds


def test_clouds_layout(small: dict[str, Path]) -> None:
    root = small["clouds"]
    files = sorted(p.name for p in (root / "train_images").iterdir())
    assert all(re.fullmatch(r"[0-9a-f]{7}\.jpg", f) for f in files)
    assert raw(root / "train_images" / files[0]).shape == (1400, 2100, 3)
    train = read_csv(root / "train.csv")
    assert list(train.columns) == ["Image_Label", "EncodedPixels"]
    assert train.Image_Label.tolist() == [f"{f}_{lab}" for f in files for lab in CLOUD_LABELS]  # all 4 per image
    assert (train.EncodedPixels == "").any() and (train.EncodedPixels != "").any()
    assert all(validate_rle(r, (1400, 2100)) == [] for r in train.EncodedPixels)
    sample = read_csv(root / "sample_submission.csv")
    tests = sorted(p.name for p in (root / "test_images").iterdir())
    assert list(sample.columns) == ["Image_Label", "EncodedPixels"]
    assert sample.Image_Label.tolist() == [f"{t}_{lab}" for t in tests for lab in CLOUD_LABELS]
    assert load_config(REPO / "configs/clouds/fpn-effb0.yaml").competition.submission_size == (350, 525)


# --------------------------------------------------------------------------- tgs-salt and isbi2012 vs ../shared/data


def test_tgs_salt_layout(small: dict[str, Path]) -> None:
    root = small["tgs-salt"]
    ids = sorted(p.stem for p in (root / "train" / "images").iterdir())
    assert all(re.fullmatch(r"[0-9a-f]{10}", i) for i in ids)
    img = raw(root / "train" / "images" / f"{ids[0]}.png")
    assert img.shape == (101, 101, 3) and img.dtype == np.uint8 and (img[..., 0] == img[..., 2]).all()  # gray as RGB
    train = read_csv(root / "train.csv")
    assert list(train.columns) == ["id", "rle_mask"] and sorted(train.id) == ids  # every image, empty cells too
    assert train.id.tolist() != ids  # shuffled rows, like the real file
    for i, rle in zip(train.id, train.rle_mask, strict=True):
        m = raw(root / "train" / "masks" / f"{i}.png")
        if rle:  # non-empty masks are 16-bit 0/65535, empty ones 8-bit zeros
            assert m.dtype == np.uint16 and set(np.unique(m)) == {0, 65535}
            assert np.array_equal((m > 0).astype(np.uint8), ref_decode(rle, (101, 101), **PUBLISHED["tgs-salt"]))
            assert np.array_equal((m > 0).astype(np.uint8), decode(rle, (101, 101)))
        else:
            assert m.dtype == np.uint8 and not m.any()
    depths = read_csv(root / "depths.csv")
    tests = sorted(p.stem for p in (root / "test" / "images").iterdir())
    assert list(depths.columns) == ["id", "z"] and sorted(depths.id) == sorted(ids + tests)
    sample = read_csv(root / "sample_submission.csv")
    assert sorted(sample.id) == tests and (sample.rle_mask == "1 1").all()


def test_tgs_salt_matches_real_layout(small: dict[str, Path]) -> None:
    real, mini = shared_dataset("tgs-salt"), small["tgs-salt"]
    tree = lambda r: sorted(str(p.relative_to(r)) for p in r.rglob("*") if p.is_dir() or p.suffix == ".csv")  # noqa: E731
    assert tree(mini) == tree(real)  # train/images, train/masks, test/images, the three csvs
    for csv in ("train.csv", "depths.csv", "sample_submission.csv"):
        assert header(mini / csv) == header(real / csv)
    real_id = sorted((real / "train" / "images").iterdir())[0]
    assert raw(real_id).shape == raw(sorted((mini / "train" / "images").iterdir())[0]).shape


def test_isbi2012_layout(small: dict[str, Path]) -> None:
    root = small["isbi2012"]
    assert sorted(p.name for p in (root / "train_images").iterdir()) == [f"isbi_{i:02d}.png" for i in range(4)]
    assert sorted(p.name for p in (root / "test_images").iterdir()) == ["isbi_test_00.png", "isbi_test_01.png"]
    img = raw(root / "train_images" / "isbi_00.png")
    assert img.shape == (512, 512) and img.dtype == np.uint8  # 8-bit gray, one channel
    assert header(root / "train.csv") == b"ImageId,EncodedPixels\r\n"
    assert header(root / "sample_submission.csv") == b"ImageId,EncodedPixels\r\n"
    assert (root / "sample_submission.csv").read_bytes().endswith(b"isbi_test_01.png,\r\n")  # empty RLEs
    train = read_csv(root / "train.csv")
    share = rle_area(train.EncodedPixels[0]) / 512**2
    assert 0.12 < share < 0.35  # real slices: ~22% membrane


def test_isbi2012_matches_real_layout(small: dict[str, Path]) -> None:
    real, mini = shared_dataset("isbi2012"), small["isbi2012"]
    assert sorted(p.name for p in real.iterdir()) == sorted(p.name for p in mini.iterdir())
    for csv in ("train.csv", "sample_submission.csv"):
        assert header(mini / csv) == header(real / csv)
    assert raw(real / "train_images" / "isbi_00.png").shape == raw(mini / "train_images" / "isbi_00.png").shape
    assert raw(real / "test_images" / "isbi_test_00.png").dtype == raw(mini / "test_images" / "isbi_test_00.png").dtype


# --------------------------------------------------------------------------- our own layouts


def test_streets_layout_mutually_exclusive_classes(small: dict[str, Path], tmp_path: Path) -> None:
    root = small["streets"]
    ids = sorted(p.stem for p in (root / "train_images").iterdir())
    assert all(re.fullmatch(r"[a-z]+_\d{6}_\d{6}", i) for i in ids) and len(ids) == 8
    assert raw(root / "train_images" / f"{ids[0]}.png").shape == (512, 1024, 3)
    train = read_csv(root / "train.csv")
    assert list(train.columns) == ["ImageId", "Label", "EncodedPixels"] and (train.EncodedPixels != "").all()
    assert set(train.Label) == set(STREET_CLASSES)
    for _, rows in train.groupby("ImageId"):
        total = sum(ref_decode(r, (512, 1024), **PUBLISHED["streets"]).astype(np.int32) for r in rows.EncodedPixels)
        assert total.max() == 1  # one class per pixel
    sample = read_csv(root / "sample_submission.csv")
    tests = sorted(p.stem for p in (root / "test_images").iterdir())
    assert list(sample.columns) == ["ImageId", "Label", "EncodedPixels"]
    assert list(zip(sample.ImageId, sample.Label, strict=True)) == [(t, c) for t in tests for c in STREET_CLASSES]
    from kseg.data.folds import make_folds

    folds, _ = make_folds(spec_cfg("streets", root, tmp_path, "data.n_folds=2"))
    seq = folds.image_id.str.rsplit("_", n=1).str[0]
    assert seq.nunique() == 4 and folds.groupby(seq).fold.nunique().eq(1).all()


def test_airplanes_layout(small: dict[str, Path]) -> None:
    root = small["airplanes"]
    files = sorted(p.name for p in (root / "train_images").iterdir())
    assert all(re.fullmatch(r"[0-9a-f]{8}\.jpg", f) for f in files)
    assert raw(root / "train_images" / files[0]).shape == (512, 512, 3)
    train = read_csv(root / "train.csv")
    assert list(train.columns) == ["ImageId", "EncodedPixels"] and train.ImageId.tolist() == files
    assert (train.EncodedPixels == "").any() and (train.EncodedPixels != "").any()
    sample = read_csv(root / "sample_submission.csv")
    assert list(sample.columns) == ["ImageId", "EncodedPixels"]
    assert sample.ImageId.tolist() == sorted(p.name for p in (root / "test_images").iterdir())


# --------------------------------------------------------------------------- shipped seed-recipe configs


@pytest.mark.parametrize("name", [n for n in ALL if n != "demo"])
def test_shipped_config_builds(name: str) -> None:
    """Each miniature's shipped config loads, matches the competition, builds its model and augmentations."""
    from kseg.data.dataset import build_augment
    from kseg.losses import build_loss
    from kseg.models import build_model, num_outputs

    cfg = load_config(REPO / MINIATURES.get(name).config, ["model.encoder_weights=none"])
    assert cfg.competition.name == name and cfg.name == MINIATURES.get(name).config[len("configs/") : -len(".yaml")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecated transforms in my recipes
        if name != "tgs-salt":  # the lead's config still uses ShiftScaleRotate
            build_augment(cfg)
    build_loss(cfg)
    model = build_model(cfg)
    assert model.net.segmentation_head[0].out_channels == num_outputs(cfg)
    fast = load_config(REPO / MINIATURES.get(name).config, list(MINIATURES.get(name).fast))
    assert fast.train.epochs == 1 and fast.model.encoder_weights is None and fast.data.n_folds == 2


def test_seed_recipes() -> None:
    carvana = load_config(REPO / "configs/carvana/unet128.yaml")
    assert carvana.data.image_size == (128, 128) and carvana.competition.submission_size == (1280, 1918)
    assert carvana.optim.name == "rmsprop" and [t.name for t in carvana.loss] == ["bce", "dice"]
    assert {a.name for a in carvana.data.augment} >= {"HorizontalFlip", "HueSaturationValue"}
    assert carvana.model.freeze_encoder_epochs > 0 and carvana.model.encoder_weights == "imagenet"
    sev = load_config(REPO / "configs/severstal/unet-resnet18.yaml")
    assert (sev.model.arch, sev.model.encoder, sev.competition.mode) == ("Unet", "resnet18", "multilabel")
    assert [t.name for t in sev.loss] == ["bce"] and (sev.optim.name, sev.optim.lr) == ("adam", 5e-4)
    assert sev.sched.name == "plateau" and sev.data.batch_size * sev.train.accumulate == 32
    assert 0.5 in sev.tune.thresholds and 3500 in sev.tune.min_sizes  # the starter's baseline is a grid cell
    streets = load_config(REPO / "configs/streets/unet-mobilenetv2.yaml")
    assert streets.model.encoder == "mobilenet_v2" and streets.competition.mode == "multiclass"
    assert [t.name for t in streets.loss] == ["ce"] and streets.sched.name == "onecycle" and streets.train.patience > 0
    planes = load_config(REPO / "configs/airplanes/unet-binary.yaml")
    assert planes.competition.mode == "multiclass" and planes.competition.classes == ("airplane",)
    assert planes.competition.submission.format == "single" and planes.competition.metric == "dice"
    tgs = load_config(REPO / "configs/tgs-salt/unet-r34.yaml")
    assert [t.name for t in tgs.loss] == ["bce"] and tgs.data.resize == "pad" and tgs.model.aux_head
    assert (tgs.predict.tta, tgs.tune.oof_tta) == ("hflip", "hflip") and max(tgs.tune.aux_gates) > 0
    tgs2 = load_config(REPO / "configs/tgs-salt/unet-r34-lovasz.yaml")  # stage 2: lovasz from stage 1's weights
    assert tgs2.name == "tgs-salt/unet-r34-lovasz" and [t.name for t in tgs2.loss] == ["lovasz"]
    assert tgs2.train.init_from.format(runs_dir="runs", fold=3) == f"runs/{tgs.name}/fold3/best.pt"
    assert tgs2.data == tgs.data and tgs2.tune == tgs.tune and tgs2.optim.lr < tgs.optim.lr
    clouds = load_config(REPO / "configs/clouds/fpn-effb0.yaml")
    assert (clouds.model.arch, clouds.model.encoder) == ("FPN", "efficientnet-b0")
