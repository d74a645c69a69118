"""Submissions are written in the competition's RLE dialect: the predict pipeline, the submission writer and
``kseg validate`` all take ``competition.rle``, checked against the reference encoders of the published rules
(tests/rle_reference.py) rather than against kseg's own codec."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from torch import nn

from kseg.competition import read_csv
from kseg.config import load_config
from kseg.data.rle import KAGGLE, RleDialect
from kseg.demo.registry import write_miniature
from kseg.infer.ensemble import Ensemble, Member
from kseg.infer.pipeline import predict_submission
from kseg.infer.probs_store import read_probs
from kseg.postprocess import apply_postprocess, default_params
from kseg.submission.validate import validate_submission

from _infer_support import ConstModel
from conftest import REPO
from rle_reference import ref_encode


def _members(cfg, model: nn.Module) -> list[Member]:
    return [Member(model, cfg, "m", 0)]


@pytest.fixture(scope="module")
def carvana_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_miniature("carvana", tmp_path_factory.mktemp("carvana"), seed=3, n_train=1, n_test=1, angles=2)


def _carvana_cfg(root: Path, tmp_path: Path, *overrides: str):
    return load_config(
        REPO / "configs/carvana/unet128.yaml",
        [
            f"data.root={root}",
            f"runs_dir={tmp_path / 'runs'}",
            "model.encoder_weights=none",
            "data.image_size=[64, 96]",
            "data.num_workers=0",
            *overrides,
        ],
    )


def test_carvana_submission_is_row_ordered(carvana_root: Path, tmp_path: Path) -> None:
    """Masks that follow the image (logit = first normalised channel) are written along rows, as Carvana's csv."""
    cfg = _carvana_cfg(carvana_root, tmp_path)
    assert cfg.competition.rle.order == "row"
    ens = Ensemble(cfg, _members(cfg, ConstModel(0.0, k=1, gain=4.0)))
    out = tmp_path / "sub.csv"
    predict_submission(cfg, ensemble=ens, out=out, save_probs=tmp_path / "probs", progress=False)
    submitted = read_csv(out)
    by_id = dict(zip(submitted.img, submitted.rle_mask, strict=True))
    probs = list(read_probs(tmp_path / "probs"))
    assert len(probs) == len(by_id) == 2
    for image_id, q, _ in probs:
        mask = apply_postprocess(q, default_params(1))[0]
        assert 0.02 < mask.mean() < 0.98 and mask.shape == (1280, 1918)
        assert by_id[image_id] == ref_encode(mask, order="row")
        assert by_id[image_id] != ref_encode(mask, order="column")
    assert validate_submission(out, cfg).ok


def test_empty_token_and_relative_starts_reach_the_csv(carvana_root: Path, tmp_path: Path) -> None:
    """A SIIM-like dialect (relative starts, '-1' for empty) set in the spec is what the submission holds."""
    cfg = _carvana_cfg(carvana_root, tmp_path)
    siim = RleDialect(starts="relative", empty="-1")
    cfg = cfg.replace(competition=dataclasses.replace(cfg.competition, rle=siim))
    out = tmp_path / "empty.csv"
    ens = Ensemble(cfg, _members(cfg, ConstModel(-9.0, k=1)))  # p ~ 1e-4 everywhere: every mask empty
    predict_submission(cfg, ensemble=ens, out=out, progress=False)
    assert (read_csv(out).rle_mask == "-1").all()
    assert validate_submission(out, cfg).ok
    out2 = tmp_path / "some.csv"
    ens = Ensemble(cfg, _members(cfg, ConstModel(0.0, k=1, gain=4.0)))
    predict_submission(cfg, ensemble=ens, out=out2, save_probs=tmp_path / "p2", progress=False)
    by_id = dict(zip(read_csv(out2).img, read_csv(out2).rle_mask, strict=True))
    for image_id, q, _ in read_probs(tmp_path / "p2"):
        mask = apply_postprocess(q, default_params(1))[0]
        assert by_id[image_id] == ref_encode(mask, order="column", starts="relative", empty="-1")
    # the same file read in the common dialect is not a valid submission: validate names the dialect
    plain = cfg.replace(competition=dataclasses.replace(cfg.competition, rle=KAGGLE))
    report = validate_submission(out2, plain)
    assert not report.ok and any("RLE dialect column-major, absolute 1-based" in p for p in report.problems)
