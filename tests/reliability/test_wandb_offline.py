"""Item 11: wandb offline makes no network connection; a wandb failure never stops training.

tests/test_train.py::test_wandb_offline_run_holds_the_metrics checks what an offline run records. Here:
(1) a whole training fold with wandb offline under a socket guard that fails any connection or name
lookup beyond loopback / unix sockets; (2) kseg's tracker in a process with no network at all
(``unshare -n``: wandb-core's own native code included); (3) wandb failing at init, log, or finish.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import textwrap

import pytest

from kseg.kernel.offline import probe_unshare
from kseg.train.fit import train_fold

from _reliab import REPO, tiny_cfg


def test_offline_training_makes_no_network_connection(demo_root, tmp_path, monkeypatch, socket_guard, caplog):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the config alone says offline
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", "https://api.wandb.invalid")  # anything reaching out would show
    cfg = tiny_cfg(demo_root, tmp_path, "wandb.mode=offline", "train.epochs=1")
    with caplog.at_level(logging.WARNING):
        train_fold(cfg, 0)
    assert socket_guard == []
    assert "wandb" not in caplog.text  # no tracking failure either
    assert len(list((cfg.run_dir / "wandb").glob("offline-run-*/run-*.wandb"))) == 1
    with pytest.raises(OSError):  # the guard itself works: an outside address is caught
        socket.create_connection(("203.0.113.1", 9), timeout=1)
    assert socket_guard and "203.0.113.1" in socket_guard[0]


TRACKER_SCRIPT = """
import sys
from kseg.config import load_config
from kseg.train.tracking import WandbTracker, start_tracker
cfg = load_config({demo!r}, ["runs_dir={runs}", "wandb.mode=offline"])
tracker = start_tracker(cfg, 0)
assert isinstance(tracker, WandbTracker), "wandb.init failed without network"
tracker.log({{"val/dice": 0.5}}, step=1)
tracker.summary({{"best_val_metric": 0.5}})
tracker.finish()
print("TRACKED", tracker.run_id)
"""


@pytest.mark.skipif(probe_unshare() is None, reason="unshare -n not permitted here")
def test_tracker_works_with_no_network_at_all(tmp_path):
    """In a fresh network namespace nothing is reachable, wandb-core's native code included."""
    script = textwrap.dedent(TRACKER_SCRIPT.format(demo=str(REPO / "configs" / "demo.yaml"), runs=str(tmp_path)))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "WANDB_SILENT": "true"}
    proc = subprocess.run(
        [*probe_unshare(), "--", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0 and "TRACKED" in proc.stdout, proc.stderr[-3000:]
    assert list((tmp_path / "demo" / "wandb").glob("offline-run-*/run-*.wandb"))


class BrokenRun:
    """A wandb run whose calls fail the way a dead service or a full disk makes them fail."""

    id = "broken1"

    def __init__(self, fail: str):
        self.fail = fail
        self.summary: dict = {}

    def log(self, *a, **k):
        if self.fail == "log":
            raise ConnectionError("wandb service went away")

    def finish(self, *a, **k):
        if self.fail == "finish":
            raise OSError(28, "No space left on device")


@pytest.mark.parametrize("fail", ["init", "log", "finish"])
def test_wandb_failure_never_stops_training(demo_root, tmp_path, monkeypatch, caplog, fail):
    import wandb

    def init(*a, **k):
        if fail == "init":
            raise wandb.errors.CommError("cannot reach api.wandb.ai")
        return BrokenRun(fail)

    monkeypatch.setattr(wandb, "init", init)
    cfg = tiny_cfg(demo_root, tmp_path, "wandb.mode=online", "train.epochs=1")
    with caplog.at_level(logging.WARNING):
        res = train_fold(cfg, 0)
    assert res.epochs == 1 and (cfg.fold_dir(0) / "best.pt").is_file() and (cfg.fold_dir(0) / "oof.npy").is_file()
    expected = {
        "init": "wandb.init failed (CommError",
        "log": "wandb log failed (ConnectionError",
        "finish": "wandb finish failed (OSError",
    }[fail]
    assert expected in caplog.text
    if fail == "init":
        assert "training continues without tracking" in caplog.text
