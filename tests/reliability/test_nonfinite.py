"""Item 10: NaN / inf losses and GradScaler's silent step skipping.

tests/test_train.py::test_early_stopping_and_nonfinite_loss checks a NaN from the first step (error
pointing at train.skip_nonfinite; skipping leaves the weights untouched). Here: a loss that turns
non-finite in epoch 2, after a good epoch was saved (the message names epoch and batch; last.pt and
best.pt of epoch 1 stay intact and resumable), the skip count, and the AMP skip log on a CPU GradScaler.
"""

from __future__ import annotations

import logging
import math

import pandas as pd
import pytest
import torch
from torch import nn

import kseg.train.fit as fit_module
from kseg.config import load_config
from kseg.losses import build_loss
from kseg.models import load_checkpoint
from kseg.optim import LrSchedule
from kseg.train.dist import DistInfo
from kseg.train.fit import train_fold
from kseg.train.loop import Runtime, amp_step, train_one_epoch
from kseg.train.state import load_last

from _reliab import DEMO_YAML, load, tiny_cfg


def _poisoned_loss(monkeypatch, bad_steps: set[int], value: float) -> None:
    """The configured loss, but training step k (0-based, counted over epochs) in ``bad_steps`` returns ``value``."""
    step = {"n": -1}

    class Poisoned(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, out, mask):
            loss, parts = self.inner(out, mask)
            if torch.is_grad_enabled():  # training, not validation
                step["n"] += 1
                if step["n"] in bad_steps:
                    loss = loss * value
            return loss, parts

    monkeypatch.setattr(fit_module, "build_loss", lambda cfg: Poisoned(build_loss(cfg)))


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nonfinite_in_epoch_2_stops_naming_it_and_keeps_epoch_1(demo_root, tmp_path, monkeypatch, value):
    cfg = tiny_cfg(demo_root, tmp_path)  # 4 steps per epoch: step 6 = epoch 2, batch 2
    _poisoned_loss(monkeypatch, {6}, value)
    with pytest.raises(FloatingPointError) as e:
        train_fold(cfg, 0)
    msg = str(e.value)
    assert msg.startswith(f"fold0 ep2 train batch 2: loss is {value}") and "train.skip_nonfinite=true" in msg
    d = cfg.fold_dir(0)
    assert pd.read_csv(d / "metrics.csv").epoch.tolist() == [1]
    assert load(d / "last.pt")["epoch"] == 1 and load(d / "best.pt")["epoch"] == 1
    load_checkpoint(d / "best.pt")
    state = load_last(d / "last.pt")
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())
    assert not [p for p in d.iterdir() if p.name.startswith(".")]  # no half-written file
    monkeypatch.undo()
    assert train_fold(cfg, 0, resume=True).epochs == 2  # and the run resumes from epoch 1


def test_skip_nonfinite_counts_skips_and_finishes(demo_root, tmp_path, monkeypatch, caplog):
    cfg = tiny_cfg(demo_root, tmp_path, "train.skip_nonfinite=true")
    _poisoned_loss(monkeypatch, {1, 3, 5}, math.nan)
    with caplog.at_level(logging.WARNING):
        res = train_fold(cfg, 0)
    assert res.epochs == 2
    assert "fold0 ep1 train: skipped 2 of 4 batches with a non-finite loss" in caplog.text
    assert "fold0 ep2 train: skipped 1 of 4 batches with a non-finite loss" in caplog.text
    assert "fold0 ep1 train batch 1: non-finite loss nan, skipping its optimizer step" in caplog.text
    weights = load(cfg.fold_dir(0) / "last.pt")["state_dict"]
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
    assert pd.read_csv(cfg.fold_dir(0) / "metrics.csv").train_loss.notna().all()  # mean over the good batches


# --------------------------------------------------------------------------- AMP: GradScaler skipping


class InfGrad(torch.autograd.Function):
    """Identity forward; backward returns inf gradients (an fp16 overflow, made deterministic)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * math.inf


class Tiny(nn.Module):
    """1x1 conv 'segmentation model' whose gradients overflow on the batches listed in ``poison``."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.poison: set[int] = set()
        self.calls = -1

    def forward(self, x):
        self.calls += 1
        y = self.conv(x)
        return {"mask": InfGrad.apply(y) if self.calls in self.poison else y}


def test_amp_step_reports_a_skipped_step():
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    before = model.weight.detach().clone()
    scaler.scale(InfGrad.apply(model(torch.ones(1, 2))).sum()).backward()
    assert amp_step(scaler, opt) is True  # inf gradient: step skipped, scale halved
    assert torch.equal(model.weight, before) and scaler.get_scale() == 512.0
    opt.zero_grad()
    scaler.scale(model(torch.ones(1, 2)).sum()).backward()
    assert amp_step(scaler, opt) is False and not torch.equal(model.weight, before)
    assert amp_step(torch.amp.GradScaler("cpu", enabled=False), opt) is False  # no AMP: never a skip


def test_train_loop_logs_gradscaler_skips(caplog):
    cfg = load_config(DEMO_YAML, ["loss=[{name: bce}]", "train.clip_grad=0"])
    model = Tiny()
    model.poison = {1}
    batches = [
        {"image": torch.randn(2, 3, 4, 4), "mask": (torch.rand(2, 4, 4, 4) > 0.5).float(), "id": ["a", "b"]}
        for _ in range(3)
    ]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    rt = Runtime(torch.device("cpu"), progress=False)
    with caplog.at_level(logging.WARNING):
        total, count = train_one_epoch(
            model,
            model,
            batches,
            build_loss(cfg),
            opt,
            LrSchedule(None, "none"),
            scaler,
            None,
            cfg,
            rt,
            DistInfo(),
            desc="fold0 ep3 train",
        )
    assert count == 6 and math.isfinite(total)
    assert "fold0 ep3 train batch 1: AMP found inf/NaN gradients; GradScaler skipped the optimizer step" in caplog.text
    assert "fold0 ep3 train: GradScaler skipped 1 of 3 optimizer steps" in caplog.text
    assert scaler.get_scale() == 512.0
