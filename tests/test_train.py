"""kseg train on the synthetic demo: artefact contract, metric, OOF, early stopping, select, wandb offline."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pandas as pd
import pytest
import torch

import kseg.train.fit as fit_module
from kseg.cli import main
from kseg.config import read_saved_config
from kseg.models import build_model, load_checkpoint
from kseg.train.fit import train_fold
from kseg.train.loop import _group_sizes
from kseg.train.oof_store import read_oof
from kseg.train.state import METRIC_COLUMNS

from _train_support import REPO, TINY, oof_score, repredict, tiny_config, val_ids


def test_kseg_train_writes_the_artefact_contract(demo_root, tmp_path, capsys):
    cfg = tiny_config(demo_root, tmp_path, "model.aux_head=true")
    args = [
        "train",
        "-c",
        str(REPO / "configs/demo.yaml"),
        "--fold",
        "1",
        f"data.root={demo_root}",
        f"data.folds_csv={cfg.folds_path}",
        f"runs_dir={cfg.runs_dir}",
        *TINY,
        "model.aux_head=true",
    ]
    assert main(args) == 0
    assert "fold 1: best dice" in capsys.readouterr().out
    d = cfg.fold_dir(1)
    assert sorted(p.name for p in d.iterdir()) == [
        "best.pt",
        "last.pt",
        "metrics.csv",
        "oof.npy",
        "oof_aux.npy",
        "oof_ids.csv",
    ]
    assert read_saved_config(cfg.run_dir / "config.yaml") == cfg

    ids = val_ids(cfg, 1)
    oof, oof_ids = read_oof(d)
    assert isinstance(oof, np.memmap) and oof.dtype == np.uint8
    assert oof.shape == (len(ids), 4, 128, 256)  # submission size, not the 64x128 model size
    assert oof_ids == ids

    metrics = pd.read_csv(d / "metrics.csv")
    assert list(metrics.columns) == METRIC_COLUMNS and metrics.epoch.tolist() == [1]
    # the OOF quantises p*255: pixels within half a level of the threshold may flip (ties), hence not exact
    assert metrics.val_metric[0] == pytest.approx(oof_score(oof, cfg, ids), abs=1e-5)

    best = torch.load(d / "best.pt", weights_only=True)
    last = torch.load(d / "last.pt", weights_only=True)
    assert best["epoch"] == 1 and best["score"] == pytest.approx(metrics.val_metric[0])
    assert {"optimizer", "scheduler", "scaler", "rng", "generator", "progress", "ema"} <= set(last)
    assert np.abs(repredict(d / "best.pt", cfg, ids).astype(int) - oof).max() <= 1


def test_train_requires_folds_csv(demo_root, tmp_path, caplog):
    rc = main(
        [
            "train",
            "-c",
            str(REPO / "configs/demo.yaml"),
            "--fold",
            "0",
            f"data.root={demo_root}",
            f"data.folds_csv={tmp_path / 'missing.csv'}",
            f"runs_dir={tmp_path}",
        ]
    )
    assert rc == 1 and "kseg folds -c" in caplog.text


def test_bad_fold_is_rejected(demo_root, tmp_path, caplog):
    cfg = tiny_config(demo_root, tmp_path)
    rc = main(
        [
            "train",
            "-c",
            str(REPO / "configs/demo.yaml"),
            "--fold",
            "7",
            f"data.root={demo_root}",
            f"data.folds_csv={cfg.folds_path}",
            f"runs_dir={tmp_path}",
        ]
    )
    assert rc == 1 and "fold 7 is not in" in caplog.text


def test_multiclass_oof_excludes_background(demo_root, tmp_path):
    cfg = tiny_config(demo_root, tmp_path, "competition.mode=multiclass", "loss=[{name: ce}, {name: dice}]")
    res = train_fold(cfg, 0)
    oof, _ = read_oof(cfg.fold_dir(0))
    assert oof.shape[1] == 4 and math.isfinite(res.best_score)
    assert (oof.astype(int).sum(axis=1) <= 255 + 4).all()  # softmax mass shared with the background


def test_early_stopping_and_nonfinite_loss(demo_root, tmp_path, monkeypatch):
    # threshold 1.0 -> empty predictions -> a constant metric: no improvement after epoch 1
    cfg = tiny_config(demo_root, tmp_path, "train.epochs=3", "train.patience=1", "train.val_threshold=1.0")
    res = train_fold(cfg, 0)
    assert (res.epochs, res.best_epoch) == (2, 1)
    assert len(pd.read_csv(cfg.fold_dir(0) / "metrics.csv")) == 2

    class NanLoss(torch.nn.Module):
        def forward(self, out, mask):
            return out["mask"].sum() * float("nan"), {}

    monkeypatch.setattr(fit_module, "build_loss", lambda cfg: NanLoss())
    with pytest.raises(FloatingPointError, match="train.skip_nonfinite=true"):
        train_fold(cfg.replace(train=cfg.train.__class__(**{**cfg.train.__dict__, "epochs": 1})), 0)
    cfg2 = tiny_config(demo_root, tmp_path, "train.skip_nonfinite=true")
    train_fold(cfg2, 0)
    start = load_checkpoint(cfg2.fold_dir(0) / "last.pt")[0].state_dict()
    torch.manual_seed(cfg2.train.seed)  # skipped steps leave the initial weights untouched
    init = build_model(cfg2).state_dict()
    assert all(torch.equal(init[k], v) for k, v in start.items() if "running" not in k and "num_batches" not in k)
    assert math.isnan(pd.read_csv(cfg2.fold_dir(0) / "metrics.csv").train_loss[0])


_REDUCE_VAL = fit_module._reduce_val


def _scripted_scores(monkeypatch, scores: list[float]) -> None:
    """Validation reports ``scores`` epoch after epoch (the val loss stays real)."""
    it = iter(scores)
    monkeypatch.setattr(fit_module, "_reduce_val", lambda *a: (_REDUCE_VAL(*a)[0], next(it)))


def test_select_last_keeps_the_last_epoch_not_the_best_one(demo_root, tmp_path, monkeypatch, capsys):
    # epoch 1 scores best on the held fold, epoch 3 is the last: best keeps 1, last keeps 3
    kept = {}
    for select in ("best", "last"):
        _scripted_scores(monkeypatch, [0.9, 0.5, 0.7])
        cfg = tiny_config(
            demo_root,
            tmp_path,
            "train.epochs=3",
            f"train.select={select}",
            "train.device=cpu",
            f"runs_dir={tmp_path / select}",
        )
        res = train_fold(cfg, 0)
        assert (res.best_epoch, res.best_score) == (1, 0.9)
        assert (res.selected_epoch, res.selected_score) == ((1, 0.9) if select == "best" else (3, 0.7))
        d = cfg.fold_dir(0)
        best = torch.load(d / "best.pt", weights_only=True)
        assert (best["epoch"], best["score"], best["select"]) == (res.selected_epoch, res.selected_score, select)
        oof, ids = read_oof(d)
        assert np.abs(repredict(d / "best.pt", cfg, ids).astype(int) - oof).max() <= 1  # OOF of best.pt's epoch
        assert read_saved_config(cfg.run_dir / "config.yaml").train.select == select
        kept[select] = (best["state_dict"], np.asarray(oof))
    last = torch.load(tmp_path / "last" / "demo" / "fold0" / "last.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(kept["last"][0][k], v) for k, v in last.items())  # best.pt = the last epoch's weights
    assert not all(torch.equal(kept["best"][0][k], v) for k, v in last.items())
    assert np.abs(kept["best"][1].astype(int) - kept["last"][1]).max() > 5  # epoch 1's OOF is not epoch 3's


def test_select_last_refuses_early_stopping_and_a_changed_rule_on_resume(demo_root, tmp_path):
    from kseg.typed import ConfigError

    with pytest.raises(ConfigError, match="train.select=last with train.patience=2.*train.patience=0"):
        tiny_config(demo_root, tmp_path, "train.select=last", "train.patience=2")

    class Killed(Exception):
        pass

    def kill(epoch: int, progress) -> None:
        raise Killed

    cfg = tiny_config(demo_root, tmp_path, "train.epochs=2", "train.device=cpu")
    with pytest.raises(Killed):
        train_fold(cfg, 0, on_epoch_end=kill)  # killed after epoch 1 of 2, trained with select=best
    changed = cfg.replace(train=dataclasses.replace(cfg.train, select="last"))
    with pytest.raises(ValueError, match="trained with train.select=best, this run has train.select=last"):
        train_fold(changed, 0, resume=True)


def test_wandb_offline_run_holds_the_metrics(demo_root, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = tiny_config(demo_root, tmp_path, "wandb.mode=offline", "train.log_images=2")
    train_fold(cfg, 0)
    runs = list((cfg.run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    data = _read_when(next(runs[0].glob("run-*.wandb")), b"best_val_metric")  # wandb-core may still be flushing
    assert "failed" not in caplog.text
    for key in (b"val/dice", b"train/loss", b"best_val_metric", b"fold0", b"val/examples"):
        assert key in data, key
    assert list((runs[0] / "files" / "media" / "images").rglob("*.png"))


def _read_when(path, needle: bytes, timeout: float = 20.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        data = path.read_bytes()
        if needle in data or time.monotonic() > deadline:
            return data
        time.sleep(0.25)


# --------------------------------------------------------------------------- helpers


def test_group_sizes():
    assert _group_sizes(5, 2) == [2, 2, 2, 2, 1]
    assert _group_sizes(3, 1) == [1, 1, 1]
