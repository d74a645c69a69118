"""Exact resume and determinism on CPU: killed after epoch 1 of 2 + --resume == an uninterrupted run."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from kseg.train.fit import train_fold

from _train_support import tiny_config

# every stateful feature on: aux head (dropout RNG), EMA, accumulation, encoder freeze, warmup schedule
FEATURES = [
    "train.epochs=2",
    "model.aux_head=true",
    "train.ema=true",
    "train.ema_decay=0.9",
    "train.accumulate=2",
    "model.freeze_encoder_epochs=1",
    "sched.warmup_epochs=0.5",
    "train.clip_grad=1.0",
]


class Killed(Exception):
    pass


def _kill_after_first_epoch(epoch: int, progress) -> None:
    if epoch == 1:
        raise Killed


def _weights(path):
    ckpt = torch.load(path, weights_only=True)
    return ckpt["state_dict"], ckpt["ema"], ckpt["optimizer"]["state"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        _same(a[k], b[k]) if isinstance(a[k], dict) else torch.equal(a[k], b[k]) for k in a
    )


def test_resume_is_bitwise_identical_and_runs_are_deterministic(demo_root, tmp_path):
    runs = {}
    for name in ("full", "again", "resumed"):
        runs[name] = tiny_config(demo_root, tmp_path, *FEATURES, f"runs_dir={tmp_path / name}")
    train_fold(runs["full"], 0)
    train_fold(runs["again"], 0)
    with pytest.raises(Killed):
        train_fold(runs["resumed"], 0, on_epoch_end=_kill_after_first_epoch)
    first = pd.read_csv(runs["resumed"].fold_dir(0) / "metrics.csv")
    assert first.epoch.tolist() == [1]
    result = train_fold(runs["resumed"], 0, resume=True)
    assert result.epochs == 2

    full = _weights(runs["full"].fold_dir(0) / "last.pt")
    for name in ("again", "resumed"):
        other = _weights(runs[name].fold_dir(0) / "last.pt")
        assert _same(full[0], other[0]), f"{name}: model weights differ"
        assert _same(full[1], other[1]), f"{name}: EMA weights differ"
        assert _same(full[2], other[2]), f"{name}: optimizer state differs"
        m_full = pd.read_csv(runs["full"].fold_dir(0) / "metrics.csv").drop(columns="seconds")
        m_other = pd.read_csv(runs[name].fold_dir(0) / "metrics.csv").drop(columns="seconds")
        pd.testing.assert_frame_equal(m_full, m_other)
    # and the run really trained: weights moved away from epoch 1's
    ep1 = torch.load(runs["full"].fold_dir(0) / "best.pt", weights_only=True)
    assert ep1["epoch"] in (1, 2)


def test_resume_without_last_checkpoint_is_a_clear_error(demo_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="--resume: .*last.pt not found"):
        train_fold(tiny_config(demo_root, tmp_path), 0, resume=True)


def test_select_last_resumes_to_the_same_last_epoch_checkpoint_and_oof(demo_root, tmp_path):
    import numpy as np

    from kseg.models import validated_state_dict

    runs = {
        name: tiny_config(demo_root, tmp_path, *FEATURES, "train.select=last", f"runs_dir={tmp_path / name}")
        for name in ("full", "resumed")
    }
    train_fold(runs["full"], 0)
    with pytest.raises(Killed):
        train_fold(runs["resumed"], 0, on_epoch_end=_kill_after_first_epoch)
    after_kill = torch.load(runs["resumed"].fold_dir(0) / "best.pt", weights_only=True)
    assert after_kill["epoch"] == 1  # select=last: epoch 1 is kept until epoch 2 replaces it
    result = train_fold(runs["resumed"], 0, resume=True)
    assert (result.selected_epoch, result.select) == (2, "last")
    best = {n: torch.load(r.fold_dir(0) / "best.pt", weights_only=True) for n, r in runs.items()}
    assert best["full"]["epoch"] == best["resumed"]["epoch"] == 2
    assert _same(best["full"]["state_dict"], best["resumed"]["state_dict"])
    ema, source = validated_state_dict(torch.load(runs["full"].fold_dir(0) / "last.pt", weights_only=True))
    assert source == "ema" and _same(best["full"]["state_dict"], ema)  # best.pt = the last epoch's EMA weights
    oofs = [np.load(r.fold_dir(0) / "oof.npy") for r in runs.values()]
    assert np.array_equal(oofs[0], oofs[1])
