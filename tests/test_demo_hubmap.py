"""HuBMAP Hacking the Kidney miniature: the real file layout (TIFF layouts, csv columns, polygon JSON) checked
with independent readers, and ``kseg demo --competition hubmap --fast`` end to end through the kernel."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from matplotlib.path import Path as Polygon

from kseg.cli import main
from kseg.competition import read_csv
from kseg.data.rle import validate_rle
from kseg.data.slides import slide_size
from kseg.demo.registry import write_miniature

from rle_reference import PUBLISHED, published_encoder, ref_decode

AXES = {"YXS", "QQSYX", "QYX", "YX"}  # tifffile's names of (H, W, 3), (1, 1, 3, H, W), (3, H, W), pages


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hubmap")
    return write_miniature("hubmap", out, seed=0, encode=published_encoder("hubmap"), n_train=3, n_test=2, size=512)


def test_files_and_csvs_as_published(root: Path) -> None:
    train = read_csv(root / "train.csv")
    sample = read_csv(root / "sample_submission.csv")
    assert list(train.columns) == ["id", "encoding"] and list(sample.columns) == ["id", "predicted"]
    assert all(re.fullmatch(r"[0-9a-f]{9}", i) for i in [*train.id, *sample.id])
    info = read_csv(root / "HuBMAP-20-dataset_information.csv")
    assert list(info.columns[:5]) == [
        "image_file",
        "width_pixels",
        "height_pixels",
        "anatomical_structures_segmention_file",
        "glomerulus_segmentation_file",
    ]
    axes = set()
    for split, ids in (("train", train.id), ("test", sample.id)):
        for i in ids:
            path = root / split / f"{i}.tiff"
            with tifffile.TiffFile(path) as tif:
                axes.add(tif.series[0].axes)
            h, w = slide_size(path)
            row = info[info.image_file == f"{i}.tiff"].iloc[0]
            assert (int(row.height_pixels), int(row.width_pixels)) == (h, w)
            assert (root / split / f"{i}-anatomical-structure.json").is_file()
    assert axes == AXES


def test_polygon_json_covers_the_rle_mask(root: Path) -> None:
    """The glomerulus features rasterised here (matplotlib point-in-polygon at pixel centres) = the RLE mask."""
    train = read_csv(root / "train.csv")
    for image_id, rle in zip(train.id, train.encoding, strict=True):
        h, w = slide_size(root / "train" / f"{image_id}.tiff")
        mask = ref_decode(rle, (h, w), **PUBLISHED["hubmap"]).astype(bool)
        features = json.loads((root / "train" / f"{image_id}.json").read_text())
        assert {f["type"] for f in features} == {"Feature"} and {f["id"] for f in features} == {"PathAnnotationObject"}
        assert {f["properties"]["classification"]["name"] for f in features} == {"glomerulus"}
        yy, xx = np.mgrid[:h, :w]
        points = np.stack([xx.ravel(), yy.ravel()], 1)
        drawn = np.zeros(h * w, bool)
        for f in features:
            assert f["geometry"]["type"] == "Polygon"
            ring = np.array(f["geometry"]["coordinates"][0], float)  # (x, y) slide pixels, closed ring
            assert (ring[0] == ring[-1]).all()
            drawn |= Polygon(ring).contains_points(points, radius=1e-9)
        drawn = drawn.reshape(h, w)
        agree = (drawn & mask).sum() / (drawn | mask).sum()
        assert agree > 0.93, (image_id, agree)  # boundary pixels: fillPoly includes edges, contains_points not


@pytest.mark.slow
def test_demo_hubmap_end_to_end_through_the_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """folds -> train on tiles -> OOF per tile -> tune -> tiled predict -> validate -> kernel build + rehearse."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    ov = [f"runs_dir={tmp_path / 'runs'}", f"kernel.dir={tmp_path / 'kernels'}", "tune.thresholds=[0.0]"]
    rc = main(["demo", "--competition", "hubmap", "--small", "--fast", "--out", str(data), "--tta", "hflip", *ov])
    out = capsys.readouterr().out
    assert rc == 0, out[-3000:]
    assert "rehearsal PASSED" in out
    sub = tmp_path / re.findall(r"^submission: (.+)$", out, re.M)[-1]
    table = pd.read_csv(sub, dtype=str, keep_default_na=False)
    sample = read_csv(data / "sample_submission.csv")
    assert table.id.tolist() == sample.id.tolist() and list(table.columns) == ["id", "predicted"]
    for image_id, rle in zip(table.id, table.predicted, strict=True):
        h, w = slide_size(data / "test" / f"{image_id}.tiff")
        assert validate_rle(rle, (h, w)) == []  # encoded at the slide's own size ...
        mask = ref_decode(rle, (h, w), "column")
        assert mask.mean() > 0.5 and mask[-1, -1]  # ... up to its last pixel (threshold 0 keeps everything)
    oof = np.load(tmp_path / "runs/hubmap/unet-tiles/fold0/oof.npy", mmap_mode="r")
    assert oof.shape[1:] == (1, 256, 256)  # OOF per tile at window (slide) resolution
    # tuned per slide (the leaderboard's mean over slides), not per tile: its images are the training slides
    record = json.loads((tmp_path / "runs/hubmap/unet-tiles/postprocess.json").read_text())
    folds = read_csv(data / "folds.csv")
    tiles = sum(len(pd.read_csv(f)) for f in (tmp_path / "runs/hubmap/unet-tiles").glob("fold*/oof_ids.csv"))
    assert record["n_images"] == len(folds) < tiles
    assert record["fold_images"] == folds.fold.value_counts().sort_index().tolist()
    # the logged val_metric of each fold = the per-slide dice of its OOF (oof >= 128, threshold 0.5) against
    # the train.csv masks, each slide's pixels counted once (its tiles' own boxes), averaged over the slides
    train = read_csv(data / "train.csv").set_index("id")
    for fold_dir in sorted((tmp_path / "runs/hubmap/unet-tiles").glob("fold*")):
        logged = pd.read_csv(fold_dir / "metrics.csv").val_metric.max()  # train.select=best: the kept epoch
        # 1e-4: a probability just under 0.5 can round to 128 (validation thresholds p > 0.5 before quantizing)
        assert logged == pytest.approx(_slide_dice(fold_dir, data, train), abs=1e-4)


def _slide_dice(fold_dir: Path, data: Path, train: pd.DataFrame) -> float:
    """Mean over the fold's slides of the whole-slide dice of its tile OOF pasted back onto each slide: tiles in
    grid order, a pixel taken from the first tile that covers it (so overlapping last windows count once)."""
    oof = np.load(fold_dir / "oof.npy")[:, 0] >= 128
    ids = pd.read_csv(fold_dir / "oof_ids.csv").image_id.tolist()
    span = oof.shape[-1]
    tiles = pd.DataFrame(
        [[*i.split("@")[0:1], *map(int, i.split("@")[1].split("_"))] for i in ids], columns=list("syx")
    )
    dice = []
    for slide, rows in tiles.groupby("s", sort=False):
        size = slide_size(data / "train" / f"{slide}.tiff")
        canvas, done = np.zeros(size, bool), np.zeros(size, bool)
        for k, row in rows.sort_values(["y", "x"]).iterrows():
            win = (slice(row.y, row.y + span), slice(row.x, row.x + span))
            h, w = done[win].shape
            new = ~done[win]
            canvas[win][new] = oof[k, :h, :w][new]
            done[win] = True
        assert done.all()  # the tiles cover the slide
        true = ref_decode(train.encoding[slide], size, **PUBLISHED["hubmap"]).astype(bool)
        total = canvas.sum() + true.sum()
        dice.append(1.0 if total == 0 else 2 * (canvas & true).sum() / total)
    return float(np.mean(dice))
