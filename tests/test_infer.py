"""Ensembling arithmetic, TTA de-augmentation, streaming prediction, save-probs, pseudo-labels, `kseg predict`."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from kseg.config import Config
from kseg.data.pixels import model_input
from kseg.infer.checkpoints import find_checkpoints, parse_folds
from kseg.infer.ensemble import Ensemble, Member, tta_proba
from kseg.infer.pipeline import default_submission_path, predict_submission
from kseg.infer.probs_store import ProbsWriter, read_probs
from kseg.infer.pseudo import PseudoLabelWriter, confident_share
from kseg.infer.stream import predict_images
from kseg.tta import get_tta

LOG3 = math.log(3.0)


class ConstModel(nn.Module):
    """Logits = ``bias`` [K, h, w] (broadcast over the batch) + ``gain`` * first input channel."""

    def __init__(self, bias: torch.Tensor | float, k: int = 4, gain: float = 0.0, aux: float | None = None) -> None:
        super().__init__()
        self.bias = bias
        self.k = k
        self.gain = gain
        self.aux = aux
        self.aux_head = aux is not None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        n, _, h, w = x.shape
        base = torch.as_tensor(self.bias, dtype=torch.float32)
        logits = base.expand(n, self.k, h, w) + self.gain * x[:, :1]
        out = {"mask": logits.clone()}
        if self.aux is not None:
            out["aux"] = torch.full((n, self.k), self.aux)
        return out


def with_size(cfg: Config, size: tuple[int, int], **data: object) -> Config:
    return cfg.replace(data=dataclasses.replace(cfg.data, image_size=size, **data))


def members(cfg: Config, spec: list[tuple[str, float]], **kw: object) -> list[Member]:
    return [Member(ConstModel(logit, **kw), cfg, exp, fold) for fold, (exp, logit) in enumerate(spec)]


# --------------------------------------------------------------------------- arithmetic


def test_two_folds_average_probabilities_not_logits(demo_cfg: Config) -> None:
    ens = Ensemble(demo_cfg, members(demo_cfg, [("a", 0.0), ("a", LOG3)]))
    probs, aux, aux_w = ens.predict(torch.zeros(2, 3, 8, 16))
    assert probs.shape == (2, 4, 8, 16)
    assert torch.allclose(probs, torch.full_like(probs, 0.625))  # (0.5 + 0.75) / 2, not sigmoid(log(3)/2)
    assert aux is None and aux_w == 0.0


def test_experiments_weigh_equally_whatever_their_fold_count(demo_cfg: Config) -> None:
    # exp a: folds at 0.5 and 0.75 -> 0.625; exp b: one fold at 0.25 -> overall (0.625 + 0.25) / 2
    ens = Ensemble(demo_cfg, members(demo_cfg, [("a", 0.0), ("a", LOG3), ("b", -LOG3)]))
    probs, _, _ = ens.predict(torch.zeros(1, 3, 4, 4))
    assert torch.allclose(probs, torch.full_like(probs, 0.4375))
    assert ens.experiments == ["a", "b"]
    assert sorted(ens.groups[0].weights) == [0.25, 0.25, 0.5]


def test_multiclass_softmax_drops_background(demo_cfg: Config) -> None:
    spec = dataclasses.replace(demo_cfg.competition, mode="multiclass")
    cfg = demo_cfg.replace(competition=spec)
    bias = torch.tensor([0.0, LOG3, 0.0, 0.0, 0.0]).reshape(5, 1, 1)  # background + 4 classes
    ens = Ensemble(cfg, [Member(ConstModel(bias, k=5), cfg, "m", 0)])
    probs, _, _ = ens.predict(torch.zeros(1, 3, 2, 2))
    assert probs.shape == (1, 4, 2, 2)
    expected = torch.tensor([3.0, 1.0, 1.0, 1.0]) / 7.0  # softmax over [0, log3, 0, 0, 0] without channel 0
    assert torch.allclose(probs[0, :, 0, 0], expected)


def test_tta_deaugments_each_view(demo_cfg: Config) -> None:
    """A position-dependent model: hflip TTA = mean of the map and its mirror image (hand computed)."""
    logits = torch.tensor([[0.0, LOG3, -LOG3]]).reshape(1, 1, 3)  # columns: 0.5, 0.75, 0.25
    model = ConstModel(logits, k=1)
    x = torch.zeros(1, 3, 1, 3)
    probs, _ = tta_proba(model, x, get_tta("hflip"), "binary")
    assert torch.allclose(probs[0, 0, 0], torch.tensor([0.375, 0.75, 0.375]))
    probs, _ = tta_proba(model, torch.zeros(1, 3, 2, 3), get_tta("vflip"), "binary")
    assert torch.allclose(probs[0, 0], torch.tensor([[0.5, 0.75, 0.25]] * 2))  # rows all equal: vflip changes nothing
    # an equivariant (pointwise) model gives the same answer with every view of d4
    eq = ConstModel(0.0, k=1, gain=1.0)
    x = torch.randn(2, 3, 5, 5)
    plain, _ = tta_proba(eq, x, get_tta("none"), "binary")
    d4, _ = tta_proba(eq, x, get_tta("d4"), "binary")
    assert torch.allclose(plain, torch.sigmoid(x[:, :1]))
    assert torch.allclose(d4, plain, atol=1e-6)


def test_aux_probabilities_averaged_over_members_with_a_head(demo_cfg: Config) -> None:
    ms = [Member(ConstModel(0.0, aux=0.0), demo_cfg, "a", 0), Member(ConstModel(0.0, aux=LOG3), demo_cfg, "a", 1)]
    ens = Ensemble(demo_cfg, ms, tta="hvflip")
    _, aux, w = ens.predict(torch.zeros(3, 3, 4, 4))
    assert aux is not None and w == pytest.approx(1.0)
    assert torch.allclose(aux / w, torch.full((3, 4), 0.625))


def test_ensemble_errors(demo_cfg: Config) -> None:
    with pytest.raises(ValueError, match="not square.*hvflip"):
        Ensemble(demo_cfg, members(demo_cfg, [("a", 0.0)]), tta="d4")  # demo image_size 128x256
    square = with_size(demo_cfg, (64, 64))
    assert len(Ensemble(square, members(square, [("a", 0.0)]), tta="d4").pairs) == 8
    other = demo_cfg.replace(competition=dataclasses.replace(demo_cfg.competition, classes=("a", "b", "c", "x")))
    with pytest.raises(ValueError, match="classes"):
        Ensemble(demo_cfg, [Member(ConstModel(0.0), other, "o", 0)])
    with pytest.raises(ValueError, match="at least one"):
        Ensemble(demo_cfg, [])


def test_parse_folds_and_find_checkpoints(tmp_path: Path) -> None:
    assert parse_folds("0, 2,1") == (0, 2, 1) and parse_folds(None) == () and parse_folds("") == ()
    with pytest.raises(ValueError, match="'x'"):
        parse_folds("0,x")
    for k in (0, 2, 10):
        (tmp_path / "e" / f"fold{k}").mkdir(parents=True)
        (tmp_path / "e" / f"fold{k}" / "best.pt").write_bytes(b"")
    (tmp_path / "e" / "fold3").mkdir()  # no checkpoint inside: ignored
    assert [k for k, _ in find_checkpoints(tmp_path, "e")] == [0, 2, 10]
    assert [k for k, _ in find_checkpoints(tmp_path, "e", (2,))] == [2]
    with pytest.raises(FileNotFoundError, match="fold3/best.pt"):
        find_checkpoints(tmp_path, "e", (0, 3))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        find_checkpoints(tmp_path, "nope")


# --------------------------------------------------------------------------- streaming over the demo test set


def test_predict_images_restores_and_quantizes(demo_cfg: Config, demo_root: Path) -> None:
    small = with_size(demo_cfg, (32, 64))
    big = with_size(demo_cfg, (64, 128))
    # two preprocessing groups (two model sizes), one experiment each: (0.75 + 0.25) / 2 = 0.5 -> q 128
    ms = [Member(ConstModel(LOG3), small, "s", 0), Member(ConstModel(-LOG3), big, "b", 0)]
    ens = Ensemble(demo_cfg, ms, tta="hflip")
    assert len(ens.groups) == 2
    ids = sorted(p.name for p in (demo_root / "test_images").iterdir())
    preds = list(predict_images(ens, ids, demo_root / "test_images", batch_size=4, progress=False, confidence=0.9))
    assert [p.image_id for p in preds] == ids
    for p in preds:
        assert p.q.shape == (4, 128, 256) and p.q.dtype == np.uint8
        assert np.all(p.q == 128)  # round(0.5 * 255) = 127.5 -> 128 (half to even)
        assert p.native_size == (128, 256)
        assert p.confident is not None and np.all(p.confident == 0.0)


def test_confident_share_hand_computed() -> None:
    p = torch.tensor([[[0.95, 0.5], [0.05, 0.9]], [[1.0, 0.0], [0.99, 0.01]]])  # [C=2, 2, 2]
    assert confident_share(p, 0.9).tolist() == [0.5, 1.0]  # 0.9 is not > 0.9


def test_pseudo_label_writer_keeps_confident_images_at_native_size(tmp_path: Path, demo_cfg: Config) -> None:
    spec = dataclasses.replace(
        demo_cfg.competition, classes=("a", "b"), class_labels=("1", "2"), image_size=(4, 6), submission_size=(2, 3)
    )
    w = PseudoLabelWriter(spec, tmp_path / "pl.csv", min_fraction=0.9)
    m = np.zeros((2, 2, 3), dtype=np.uint8)
    m[0, 0, 0] = 1  # top-left submission pixel -> a 2x2 block at native size
    assert w.add("keep.jpg", m, np.array([0.95, 1.0]), (4, 6))
    assert not w.add("drop.jpg", m, np.array([0.95, 0.5]), (4, 6))  # class b not confident
    assert w.add("empty.jpg", np.zeros_like(m), np.array([1.0, 1.0]), (4, 6))
    w.close()
    # column-major 4x6: pixels (0,0),(1,0) = 1-2 and (0,1),(1,1) = 5-6
    assert (tmp_path / "pl.csv").read_text() == "ImageId,ClassId,EncodedPixels\nkeep.jpg,1,1 2 5 2\nempty.jpg,1,\n"
    assert (w.kept, w.seen) == (2, 3)


def test_probs_writer_round_trip(tmp_path: Path) -> None:
    w = ProbsWriter(tmp_path / "p", ["x", "y"])
    a = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    w.add("im1.jpg", a, np.array([0.25, 0.5]))
    w.add("im2.jpg", a[:, :1], np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="uint8"):
        w.add("bad", a.astype(np.float32))
    w.close()
    got = list(read_probs(tmp_path / "p"))
    assert [g[0] for g in got] == ["im1.jpg", "im2.jpg"]
    assert np.array_equal(got[0][1], a) and np.array_equal(got[1][1], a[:, :1])
    assert got[0][2].tolist() == [0.25, 0.5]
    assert pd.read_csv(tmp_path / "p" / "ids.csv").columns.tolist() == [
        "image_id",
        "file",
        "height",
        "width",
        "aux_x",
        "aux_y",
    ]


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


# --------------------------------------------------------------------------- end to end: real checkpoints + CLI


@pytest.fixture()
def tiny_runs(demo_cfg: Config) -> Config:
    """Two fold checkpoints of a tiny random U-Net (image_size 64x128) under the demo config's runs dir."""
    from kseg.models import build_model, save_checkpoint

    cfg = with_size(demo_cfg, (64, 128))
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, kwargs={"encoder_depth": 3, "decoder_channels": [16, 8, 8]}))
    for fold in (0, 1):
        torch.manual_seed(fold)
        save_checkpoint(cfg.fold_dir(fold) / "best.pt", build_model(cfg), cfg, epoch=1)
    return cfg


def test_ensemble_from_runs_matches_manual_average(tiny_runs: Config, demo_root: Path) -> None:
    from kseg.data.dataset import SegDataset
    from kseg.data.geometry import restore
    from kseg.models import load_checkpoint, predict_proba
    from kseg.postprocess import quantize

    ens = Ensemble.from_runs(tiny_runs, tta="hflip", device="cpu")
    assert [m.fold for m in ens.members] == [0, 1]
    image_id = sorted(p.name for p in (demo_root / "test_images").iterdir())[0]
    pred = next(predict_images(ens, [image_id], demo_root / "test_images", progress=False))
    x = SegDataset(tiny_runs, [image_id], image_dir=demo_root / "test_images")[0]["image"][None]
    x = model_input(x, tiny_runs.data.normalize)
    manual = torch.zeros(1, 4, 64, 128)
    for fold in (0, 1):
        model, _ = load_checkpoint(tiny_runs.fold_dir(fold) / "best.pt")
        for flip in (False, True):
            xin = x.flip(-1) if flip else x
            p, _ = predict_proba(model, xin, "multilabel")
            manual += (p.flip(-1) if flip else p) / 4
    expected = quantize(restore(manual, (128, 256), tiny_runs)[0])
    assert np.abs(pred.q.astype(int) - expected.astype(int)).max() <= 1  # float summation order only


def test_kseg_predict_cli(tiny_runs: Config, demo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from kseg.cli import main

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "sub.csv"
    overrides = [
        f"data.root={demo_root}",
        f"runs_dir={tmp_path / 'runs'}",
        "data.image_size=[64,128]",
        "data.num_workers=0",
        "train.device=cpu",
    ]
    rc = main(
        [
            "predict",
            "-c",
            str(repo / "configs" / "demo.yaml"),
            "--folds",
            "0,1",
            "--tta",
            "vflip",
            "--out",
            str(out),
            "--pseudo-labels",
            str(tmp_path / "pl.csv"),
            "--no-progress",
            *overrides,
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"submission: {out}" in printed and "2 checkpoint(s) x 2 TTA view(s)" in printed
    sample_lines = (demo_root / "sample_submission.csv").read_text().splitlines()
    lines = out.read_text().splitlines()
    assert lines[0] == sample_lines[0] and len(lines) == len(sample_lines)
    assert [ln.split(",")[0] + ln.split(",")[-1] for ln in lines] == [
        ln.split(",")[0] + ln.split(",")[-1] for ln in sample_lines
    ]
    assert (tmp_path / "pl.csv").read_text().startswith("ImageId,ClassId,EncodedPixels\n")
    # --runs swallowing trailing overrides, and a missing fold
    rc = main(
        [
            "predict",
            "-c",
            str(repo / "configs" / "demo.yaml"),
            "--out",
            str(out),
            "--folds",
            "0,5",
            "--runs",
            "demo",
            *overrides,
        ]
    )
    assert rc == 1


def test_kseg_predict_exits_1_when_the_validator_rejects(
    tiny_runs: Config, demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import kseg.submission.validate as validate
    from kseg.cli import main

    real = validate.validate_submission

    def strict(path: Path, cfg: Config):
        report = real(path, cfg)
        assert report.ok, report.problems  # our output is valid; then pretend Kaggle disagrees
        report.problems.append("row 2: pretend problem")
        return report

    monkeypatch.setattr(validate, "validate_submission", strict)
    repo = Path(__file__).resolve().parents[1]
    rc = main(
        [
            "predict",
            "-c",
            str(repo / "configs" / "demo.yaml"),
            "--out",
            str(tmp_path / "s.csv"),
            "--no-progress",
            f"data.root={demo_root}",
            f"runs_dir={tmp_path / 'runs'}",
            "data.image_size=[64,128]",
            "train.device=cpu",
        ]
    )
    assert rc == 1
    assert "submission INVALID" in capsys.readouterr().out


def test_kseg_predict_allow_postprocess_mismatch_flag(
    tiny_runs: Config, demo_root: Path, tmp_path: Path, caplog
) -> None:
    from kseg.cli import main

    classes = [{"name": c, "params": {"threshold": 0.5}} for c in tiny_runs.competition.classes]
    (tiny_runs.run_dir / "postprocess.json").write_text(
        json.dumps({"runs": ["demo"], "folds": [0, 1], "oof_tta": "none", "classes": classes})
    )
    argv = [
        "predict",
        "-c",
        str(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"),
        "--tta",
        "vflip",
        "--out",
        str(tmp_path / "s.csv"),
        "--no-progress",
        f"data.root={demo_root}",
        f"runs_dir={tmp_path / 'runs'}",
        "data.image_size=[64,128]",
        "train.device=cpu",
    ]
    assert main(argv) == 1 and "tta none -> vflip" in caplog.text and not (tmp_path / "s.csv").exists()
    assert main([*argv, "--allow-postprocess-mismatch"]) == 0 and (tmp_path / "s.csv").is_file()
