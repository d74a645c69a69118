"""Every miniature competition end to end with its shipped config: ``kseg demo --competition NAME --small --fast``
runs folds -> train (1 epoch, resnet18 depth 3, no pretrained weights, 2 folds) -> tune -> predict -> validate,
and the submission must be in the competition's exact format and at its submission size.

Size probe: the tuning grid is pinned to threshold 0 (keep every pixel with quantized probability >= 1/255),
so after one epoch the masks cover most of the image: every RLE must fit the competition's submission size
(Clouds 350x525, Carvana 1280x1918, ...), the masks must cover most of it and at least one must reach its
last pixel (bottom-right, pixel H*W): a mask encoded at a larger size does not fit, one at a smaller size
never reaches pixel H*W.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kseg.cli import main
from kseg.competition import CompetitionSpec, read_csv, split_rows
from kseg.config import load_config, read_saved_config
from kseg.data.inputs import ImagePaths, input_size
from kseg.data.rle import decode, validate_rle
from kseg.demo.registry import MINIATURES

from conftest import REPO

TTA_WARNING = "may not carry over"  # kseg predict: postprocess.json tuned on OOF of another TTA
SIZE_PROBE = ("tune.thresholds=[0.0]", "tune.min_sizes=[0]", "tune.aux_gates=[0]")


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def check_masks(name: str, spec: CompetitionSpec, root: Path, ids: np.ndarray, rles: list[str]) -> None:
    """The size probe on a submission's RLEs (rows ``ids``), each at its image's submission size."""
    paths = ImagePaths(spec, root / spec.test_images)  # sizes vary (UW-Madison): each test image's own
    sizes = [tuple(spec.submission_size or input_size(spec, paths(i))) for i in ids]
    bad = [(i, s) for i, r, s in zip(ids, rles, sizes, strict=True) if validate_rle(r, s, spec.rle)]
    assert not bad, f"{name}: masks do not fit their submission sizes: {bad[:3]}"
    if len(set(sizes)) > 1:  # the probe per image: most of it covered, some mask reaches its last pixel
        masks = [decode(r, s, spec.rle) for r, s in zip(rles, sizes, strict=True)]
        assert np.mean([m.mean() for m in masks]) > 0.5 and any(m[-1, -1] for m in masks), name
        return
    h, w = sizes[0]
    masks = np.stack([decode(r, (h, w), spec.rle) for r in rles])
    if spec.exclusive:  # no pixel claimed twice; the probe then covers each image with the union of its classes
        claims = np.zeros((len(set(ids)), h, w), dtype=np.int64)
        np.add.at(claims, pd.factorize(ids)[0], masks)
        assert claims.max() <= 1, f"{name}: a pixel is claimed by two exclusive classes"
        masks = claims.astype(np.uint8)
    assert masks.mean() > 0.5 and masks[:, -1, -1].any(), f"{name}: masks not at {h}x{w}: {masks.mean():.2f}"


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in MINIATURES.names() if n != "hubmap"])  # slides: test_demo_hubmap.py
def test_pipeline_end_to_end(
    name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)  # submissions/ land here
    mini = MINIATURES.get(name)
    root = tmp_path / "data"
    overrides = [f"runs_dir={tmp_path / 'runs'}", "predict.batch_size=4", *SIZE_PROBE]
    rc = main(
        [
            "demo",
            "--competition",
            name,
            "--small",
            "--fast",
            "--out",
            str(root),
            "--tta",
            "hflip",
            "--no-kernel",
            *overrides,
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out[-3000:]
    assert TTA_WARNING not in caplog.text  # tuned on OOF predicted with the submission's TTA
    found = re.findall(r"^submission: (.+)$", out, re.M)
    assert found, out[-3000:]
    sub = tmp_path / found[-1]
    cfg = load_config(REPO / mini.config, [*mini.fast, f"data.root={root}", *overrides, "tune.oof_tta=hflip"])
    spec = cfg.competition

    # training artefacts: OOF at the OOF size, resolved config with the competition embedded
    fixed = spec.oof_size or spec.submission_size or spec.image_size  # None: each fold's first image's size
    n_oof = 0
    for fold in (0, 1):
        fold_dir = cfg.fold_dir(fold)
        oof = np.load(fold_dir / "oof.npy", mmap_mode="r")
        assert oof.dtype == np.uint8 and oof.shape[1] == spec.num_classes
        assert fixed is None or oof.shape[2:] == tuple(fixed)
        n_oof += oof.shape[0]
        assert (fold_dir / "best.pt").is_file()
    assert n_oof == len(read_csv(cfg.folds_path))
    assert read_saved_config(cfg.run_dir / "config.yaml").competition == spec
    assert (cfg.run_dir / "postprocess.json").is_file()
    if cfg.tune.oof_tta:  # tuned on the OOF re-predicted with TTA (kseg predict --oof)
        assert all((cfg.fold_dir(k) / f"oof_tta-{cfg.tune.oof_tta}.npy").is_file() for k in (0, 1))

    # the submission: the sample's header (byte for byte), rows, ids, classes and line endings
    sample_path = root / spec.sample_submission
    got, want = lines(sub), lines(sample_path)
    assert got[0] == want[0] and len(got) == len(want)
    ending = b"\r\n" if want[0].endswith(b"\r\n") else b"\n"
    assert all(line.endswith(ending) for line in got)
    submission, sample = read_csv(sub), read_csv(sample_path)
    csv = spec.submission
    assert list(submission.columns) == list(sample.columns)
    ids, cls = split_rows(spec, csv, submission, str(sub))
    sample_ids, sample_cls = split_rows(spec, csv, sample, str(sample_path))
    assert ids.tolist() == sample_ids.tolist() and cls.tolist() == sample_cls.tolist()
    other = [c for c in sample.columns if c != csv.rle_column]
    assert submission[other].equals(sample[other])
    check_masks(name, spec, root, ids, submission[csv.rle_column].tolist())


@pytest.mark.slow
def test_demo_default_tta_is_tuned_on_oof_predicted_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``make demo`` (``kseg demo``: predict --tta hflip by default) re-predicts the OOF with hflip and tunes on
    it, so ``kseg predict`` has nothing to warn about; here on the fast, small path."""
    import json
    import logging

    caplog.set_level(logging.INFO)
    monkeypatch.chdir(tmp_path)
    rc = main(
        ["demo", "--small", "--fast", "--out", str(tmp_path / "data"), "--no-kernel", f"runs_dir={tmp_path / 'runs'}"]
    )
    assert rc == 0
    assert TTA_WARNING not in caplog.text
    assert "demo: kseg predict -c" in caplog.text and " --oof --tta hflip " in caplog.text
    run_dir = tmp_path / "runs" / "demo"
    assert json.loads((run_dir / "postprocess.json").read_text())["oof_tta"] == "hflip"
    assert all((run_dir / f"fold{k}" / "oof_tta-hflip.npy").is_file() for k in (0, 1))
