"""wandb runs of kseg tune and kseg ensemble: offline with no network call (socket guard), disabled writes nothing,
a wandb failure is a warning; the offline run holds job type, group, scores and the tune table."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from kseg.report.wandb_runs import wandb_lines
from kseg.tune.blend import select_ensemble
from kseg.tune.run import tune
from kseg.tune.tracking import log_ensemble, log_job, log_tune

from _train_support import ensemble_cfg, write_member_oof


def _read_when(path, needle: bytes, timeout: float = 20.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        data = path.read_bytes()
        if needle in data or time.monotonic() > deadline:
            return data
        time.sleep(0.25)


@pytest.fixture()
def members(demo_root, tmp_path):
    cfg = ensemble_cfg(demo_root, tmp_path)
    write_member_oof(cfg, np.random.default_rng(0))
    return cfg


def _offline_run(cfg) -> bytes:
    runs = list((cfg.run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    return _read_when(next(runs[0].glob("run-*.wandb")), b"score_cv")


def test_offline_tune_and_ensemble_runs_make_no_network_call(members, monkeypatch, socket_guard, caplog) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the config alone says offline
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", "https://api.wandb.invalid")
    cfg = members.replace(name="good", wandb=members.wandb.__class__(mode="offline"))
    with caplog.at_level(logging.WARNING):
        assert log_tune(cfg, tune(cfg, ["good"], progress=False))
    data = _offline_run(cfg)
    for key in (b"tune", b"good", b"score_default", b"score_tuned", b"score_cv", b"tune_table", b"threshold"):
        assert key in data, key

    ens = members.replace(wandb=cfg.wandb)
    result = select_ensemble(ens, ["good", "noise"], steps=2, progress=False)
    with caplog.at_level(logging.WARNING):
        assert log_ensemble(ens, result, 2)
    data = _offline_run(ens)
    for key in (b"ensemble", b"demo-ensemble", b"score_optimistic", b"member/noise/score_cv", b"selection", b"weights"):
        assert key in data, key
    assert socket_guard == [] and "wandb" not in caplog.text
    lines = wandb_lines(ens, ["good", "demo-ensemble", "fair"])  # kseg report --wandb, offline: the run folders
    assert lines[2].startswith("- good: offline-run-") and lines[3].startswith("- demo-ensemble: offline-run-")
    assert lines[4] == "- fair: none"


def test_disabled_writes_nothing_and_a_failure_is_a_warning(members, monkeypatch, caplog) -> None:
    assert log_job(members, "tune", {}, {"score_cv": 1.0}, {}) is None  # the demo config: wandb disabled
    assert not (members.run_dir / "wandb").exists()
    import wandb

    def broken(*args, **kwargs):
        raise RuntimeError("service down")

    monkeypatch.setattr(wandb, "init", broken)
    cfg = members.replace(wandb=members.wandb.__class__(mode="offline"))
    with caplog.at_level(logging.WARNING):
        assert log_job(cfg, "ensemble", {}, {}, {}) is None
    assert "wandb ensemble run failed (RuntimeError: service down)" in caplog.text
