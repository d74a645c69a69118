"""kseg.train.state: epoch bookkeeping (best score, early stopping, selected epoch) and what --resume refuses."""

from __future__ import annotations

import dataclasses
import logging
import math

import pytest

from kseg.config import config_to_dict, load_config
from kseg.train.state import Progress, check_resumable, config_changes

from _train_support import REPO


def _row(epoch: int, score: float) -> dict:
    return {"epoch": epoch, "lr": 0.1, "train_loss": 1.0, "val_loss": 1.0, "val_metric": score, "seconds": 1.0}


def test_progress_books_best_epoch_patience_and_selection():
    p = Progress()
    assert p.record(_row(1, 0.5), patience=2) and (p.epoch, p.best_score, p.best_epoch, p.bad_epochs) == (1, 0.5, 1, 0)
    assert not p.record(_row(2, 0.5), patience=2)  # equal is no improvement
    assert not p.record(_row(3, math.nan), patience=2)  # NaN never improves
    assert (p.epoch, p.best_epoch, p.bad_epochs, p.stopped_early) == (3, 1, 2, True)
    assert [r["epoch"] for r in p.history] == [1, 2, 3]
    assert p.selected("best") == (0.5, 1)
    q = Progress()
    for e, s in enumerate([0.9, 0.5, 0.7], start=1):
        q.record(_row(e, s))  # patience 0: never stops
    assert not q.stopped_early and q.selected("last") == (0.7, 3) and q.selected("best") == (0.9, 1)
    assert Progress.from_dict(q.to_dict()) == q


def _ckpt(*overrides: str) -> dict:
    return {"config": config_to_dict(load_config(REPO / "configs" / "demo.yaml", list(overrides)))}


def test_resume_refuses_another_select_rule_or_other_parameter_groups():
    cfg = load_config(REPO / "configs" / "demo.yaml")
    check_resumable(_ckpt(), cfg, "last.pt")
    with pytest.raises(ValueError, match="last.pt was trained with train.select=last, this run has train.select=best"):
        check_resumable(_ckpt("train.select=last"), cfg, "last.pt")
    msg = "optim.no_decay_norm_bias=false, this run has optim.no_decay_norm_bias=true: the optimizer state does not fit"
    with pytest.raises(ValueError, match=msg):
        check_resumable(_ckpt("optim.no_decay_norm_bias=false"), cfg, "last.pt")
    older = _ckpt()
    del older["config"]["optim"]["no_decay_norm_bias"]  # written before the option: every parameter decayed
    with pytest.raises(ValueError, match="Resume with optim.no_decay_norm_bias=false"):
        check_resumable(older, cfg, "last.pt")
    off = cfg.replace(optim=dataclasses.replace(cfg.optim, no_decay_norm_bias=False))
    check_resumable(older, off, "last.pt")


def test_resume_logs_the_other_config_changes(caplog):
    cfg = load_config(REPO / "configs" / "demo.yaml", ["optim.lr=0.1"])
    with caplog.at_level(logging.WARNING):
        check_resumable(_ckpt(), cfg, "last.pt")
    assert "--resume with a changed config (exact continuation not guaranteed): optim.lr: 0.003 -> 0.1" in caplog.text
    assert config_changes({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3, "d": 4}}) == ["a.c: 2 -> 3", "a.d: None -> 4"]
