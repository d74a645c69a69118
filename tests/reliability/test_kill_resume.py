"""Item 1 (and the kill half of item 2): a real SIGKILL of a ``kseg train`` subprocess, then ``--resume``.

The killed run freezes at a chosen point (``_faults.py``: mid-epoch, or between the temp write and the
rename of ``last.pt``) and is killed there with SIGKILL; ``kseg train --resume`` then finishes the fold.
Its final weights, OOF and metrics must equal an uninterrupted run's bit for bit (CPU), and
``metrics.csv`` must list every epoch exactly once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kseg.cli import main

from _faults import run_and_kill
from _reliab import assert_same_weights, load, metrics, tiny_cfg, train_argv

SAME = ["epoch", "lr", "train_loss", "val_loss", "val_metric"]  # every column but wall-clock seconds


@pytest.fixture(scope="module")
def reference(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fold0/ of an uninterrupted 2-epoch run."""
    tmp = tmp_path_factory.mktemp("reference")
    cfg = tiny_cfg(demo_root, tmp)
    assert main(train_argv(demo_root, tmp)) == 0
    return cfg.fold_dir(0)


def _assert_same_run(fold_dir: Path, ref: Path) -> None:
    assert_same_weights(load(fold_dir / "last.pt")["state_dict"], load(ref / "last.pt")["state_dict"])
    assert_same_weights(load(fold_dir / "best.pt")["state_dict"], load(ref / "best.pt")["state_dict"])
    assert np.array_equal(np.load(fold_dir / "oof.npy"), np.load(ref / "oof.npy"))
    got, want = metrics(fold_dir), metrics(ref)
    assert got.epoch.tolist() == [1, 2]  # no duplicated, no missing epoch
    pd.testing.assert_frame_equal(got[SAME], want[SAME])


def test_sigkill_mid_epoch_then_resume_is_bitwise_identical(demo_root, tmp_path, reference):
    cfg = tiny_cfg(demo_root, tmp_path)
    fold_dir = cfg.fold_dir(0)
    # epoch 2 (0-based 1), 6th of 16 training items: inside its second batch of 4
    run_and_kill(train_argv(demo_root, tmp_path), "mid_epoch:1:6", tmp_path / "mid.marker", tmp_path)
    assert metrics(fold_dir).epoch.tolist() == [1]  # the kill really landed inside epoch 2
    assert load(fold_dir / "last.pt")["epoch"] == 1

    assert main(train_argv(demo_root, tmp_path, resume=True)) == 0
    _assert_same_run(fold_dir, reference)


def test_sigkill_between_temp_write_and_rename(demo_root, tmp_path, reference):
    """Item 2 with a real kill: epoch 2's last.pt is written to a temp file but never renamed."""
    cfg = tiny_cfg(demo_root, tmp_path)
    fold_dir = cfg.fold_dir(0)
    run_and_kill(train_argv(demo_root, tmp_path), "before_rename:last.pt:2", tmp_path / "rename.marker", tmp_path)
    leftovers = [p.name for p in fold_dir.iterdir() if p.name.startswith(".last.pt.")]
    assert leftovers, "the kill should have left epoch 2's temp file behind"
    last = load(fold_dir / "last.pt")  # the previous last.pt is intact and loads (weights only)
    assert last["epoch"] == 1 and last["progress"]["epoch"] == 1
    assert load(fold_dir / "best.pt")["epoch"] in (1, 2)  # best.pt is always a whole file too
    ref_epoch1 = metrics(reference).iloc[:1]
    pd.testing.assert_frame_equal(metrics(fold_dir)[SAME].iloc[:1], ref_epoch1[SAME])

    assert main(train_argv(demo_root, tmp_path, resume=True)) == 0
    _assert_same_run(fold_dir, reference)
    assert not [p.name for p in fold_dir.iterdir() if p.name.startswith(".")], "stale temp files left behind"
