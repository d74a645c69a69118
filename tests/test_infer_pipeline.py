"""kseg.infer.pipeline: ``predict_submission`` end to end with fake members, and the post-processing ensemble check."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kseg.config import Config
from kseg.infer.ensemble import Ensemble, Member
from kseg.infer.pipeline import default_submission_path, predict_submission
from kseg.infer.probs_store import read_probs

from _infer_support import LOG3, ConstModel, members


def test_default_submission_path(demo_cfg: Config) -> None:
    from datetime import datetime

    cfg = demo_cfg.replace(name="tgs-salt/unet-r34")
    assert default_submission_path(cfg, datetime(2024, 5, 6, 7, 8, 9)) == Path(
        "submissions/tgs-salt-unet-r34-20240506-070809.csv"
    )


def test_predict_submission_with_fake_members(demo_cfg: Config, demo_root: Path, tmp_path: Path) -> None:
    """Constant p=0.75 everywhere, tuned thresholds 0.7 (class 1) / 0.8 (others) -> class 1 full, rest empty."""
    params = [{"threshold": 0.7}] + [{"threshold": 0.8}] * 3
    run_dir = demo_cfg.run_dir
    run_dir.mkdir(parents=True)
    (run_dir / "postprocess.json").write_text(
        json.dumps({"classes": [{"name": str(i), "params": p} for i, p in enumerate(params)]})
    )
    ens = Ensemble(demo_cfg, members(demo_cfg, [("a", LOG3)]), tta="hflip")
    out = tmp_path / "sub.csv"
    res = predict_submission(
        demo_cfg,
        ensemble=ens,
        out=out,
        save_probs=tmp_path / "probs",
        pseudo_labels=tmp_path / "pl.csv",
        confidence=0.7,
        progress=False,
    )
    sample = pd.read_csv(demo_root / "sample_submission.csv", dtype=str, keep_default_na=False)
    sub = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(sub.columns) == ["ImageId", "EncodedPixels", "ClassId"]
    assert sub[["ImageId", "ClassId"]].equals(sample[["ImageId", "ClassId"]])
    full = f"1 {128 * 256}"
    assert (sub.EncodedPixels == np.where(sub.ClassId == "1", full, "")).all()
    assert res.images == 6 and res.empty_share == [0.0, 1.0, 1.0, 1.0]
    # every pixel has p = 0.75 > 0.7: all confident -> every image pseudo-labelled, only class 1 rows
    pl = pd.read_csv(tmp_path / "pl.csv", dtype=str, keep_default_na=False)
    assert res.pseudo_kept == 6 and list(pl.columns) == ["ImageId", "ClassId", "EncodedPixels"]
    assert (pl.ClassId == "1").all() and (pl.EncodedPixels == full).all()
    probs = list(read_probs(tmp_path / "probs"))
    assert len(probs) == 6 and all(np.all(q == 191) for _, q, _ in probs)  # round(0.75 * 255)


def test_predict_submission_multiclass_is_exclusive(demo_cfg: Config, tmp_path: Path) -> None:
    """Softmax p = (bg .05, .42, .47, .03, .03) everywhere, thresholds 0.4: only class 2 (the argmax) is written."""
    cfg = demo_cfg.replace(competition=dataclasses.replace(demo_cfg.competition, mode="multiclass"))
    assert cfg.competition.exclusive  # multiclass implies exclusive
    cfg.run_dir.mkdir(parents=True)
    classes = [{"name": str(i), "params": {"threshold": 0.4}} for i in range(4)]
    (cfg.run_dir / "postprocess.json").write_text(json.dumps({"classes": classes}))
    bias = torch.log(torch.tensor([0.05, 0.42, 0.47, 0.03, 0.03])).reshape(5, 1, 1)
    ens = Ensemble(cfg, [Member(ConstModel(bias, k=5), cfg, "m", 0)])
    out = tmp_path / "sub.csv"
    res = predict_submission(cfg, ensemble=ens, out=out, progress=False)
    sub = pd.read_csv(out, dtype=str, keep_default_na=False)
    # thresholded alone, classes 1 and 2 would both claim every pixel
    assert (sub.EncodedPixels == np.where(sub.ClassId == "2", f"1 {128 * 256}", "")).all()
    assert res.empty_share == [1.0, 0.0, 1.0, 1.0]


def test_postprocess_mismatch_names_each_difference() -> None:
    from kseg.infer.pipeline import postprocess_mismatch

    record = {"runs": ["a", "b"], "folds": [0, 1, 2], "oof_tta": "hflip"}
    assert postprocess_mismatch(record, {"b": [2, 1, 0], "a": [0, 1, 2]}, "hflip") == []  # order is not a difference
    assert postprocess_mismatch(record, {"a": [0, 1, 2]}, "none") == ["runs ['a', 'b'] -> ['a']", "tta hflip -> none"]
    assert postprocess_mismatch(record, {"a": [0, 1, 2], "b": [0, 1], "c": [0]}, "hflip") == [
        "runs ['a', 'b'] -> ['a', 'b', 'c']",
        "folds of b [0, 1, 2] -> [0, 1]",
    ]
    assert postprocess_mismatch({"classes": []}, {"z": [7]}, "d4") == []  # nothing recorded: nothing compared


def test_predict_refuses_postprocess_tuned_on_another_ensemble(demo_cfg: Config, tmp_path: Path, caplog) -> None:
    from kseg.infer.pipeline import PostprocessMismatchError

    run_dir = demo_cfg.run_dir
    run_dir.mkdir(parents=True)
    classes = [{"name": c, "params": {"threshold": 0.7}} for c in demo_cfg.competition.classes]
    record = {"runs": ["demo"], "folds": [0, 1], "oof_tta": "none", "classes": classes}
    (run_dir / "postprocess.json").write_text(json.dumps(record))
    two = members(demo_cfg, [("demo", LOG3), ("demo", LOG3)])  # folds 0 and 1 at p = 0.75
    out = tmp_path / "sub.csv"
    cases = [
        (two, "hflip", "tta none -> hflip"),
        (two[:1], "none", r"folds of demo \[0, 1\] -> \[0\]"),
        (two + [Member(ConstModel(LOG3), demo_cfg, "other", 0)], "none", r"runs \['demo'\] -> \['demo', 'other'\]"),
    ]
    for ms, tta, what in cases:
        with pytest.raises(PostprocessMismatchError, match=what + ".*--runs demo --folds 0,1 --tta none"):
            predict_submission(demo_cfg, ensemble=Ensemble(demo_cfg, ms, tta=tta), tta=tta, out=out, progress=False)
        assert not out.exists()  # refused before anything is written
    res = predict_submission(
        demo_cfg,
        ensemble=Ensemble(demo_cfg, two, tta="hflip"),
        tta="hflip",
        out=out,
        progress=False,
        allow_postprocess_mismatch=True,
    )
    assert res.path == out and "predicting with it anyway" in caplog.text
    sub = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert (sub.EncodedPixels == f"1 {128 * 256}").all()  # the tuned 0.7 still applied to p = 0.75
    predict_submission(demo_cfg, ensemble=Ensemble(demo_cfg, two), out=out, progress=False)  # the tuned one: fine
