"""kseg.infer.ensemble: ensembling arithmetic, TTA de-augmentation, ``Ensemble.from_runs`` on real checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from kseg.config import Config
from kseg.data.pixels import model_input
from kseg.infer.ensemble import Ensemble, Member, tta_proba
from kseg.infer.stream import predict_images
from kseg.tta import get_tta

from _infer_support import LOG3, ConstModel, members, with_size


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


# --------------------------------------------------------------------------- end to end: real checkpoints


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
