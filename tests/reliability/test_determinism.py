"""Item 12: same config and seed twice -> identical weights and identical OOF on CPU.

tests/test_resume.py::test_resume_is_bitwise_identical_and_runs_are_deterministic compares the weights,
EMA and optimizer state of two in-process runs with every stateful feature on. Here the OOF store and
metrics join the comparison, and the second run loads its data with 2 worker processes instead of none
(augmentations are seeded per sample, so the worker count must not matter); a different seed must differ.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from kseg.train.fit import train_fold

from _reliab import assert_same_weights, load, tiny_cfg


def _run(demo_root, tmp_path, name: str, *extra: str):
    cfg = tiny_cfg(demo_root, tmp_path, f"runs_dir={tmp_path / name}", "model.aux_head=true", *extra)
    train_fold(cfg, 0)
    d = cfg.fold_dir(0)
    return load(d / "last.pt"), np.load(d / "oof.npy"), pd.read_csv(d / "metrics.csv").drop(columns="seconds")


def test_same_seed_same_weights_and_oof_whatever_the_workers(demo_root, tmp_path):
    a = _run(demo_root, tmp_path, "a")
    b = _run(demo_root, tmp_path, "b", "data.num_workers=2")
    assert_same_weights(a[0]["state_dict"], b[0]["state_dict"])
    assert np.array_equal(a[1], b[1]) and a[1].any()
    pd.testing.assert_frame_equal(a[2], b[2])
    c = _run(demo_root, tmp_path, "c", "train.seed=43")
    assert not torch.equal(
        a[0]["state_dict"]["net.decoder.blocks.0.conv1.0.weight"],
        c[0]["state_dict"]["net.decoder.blocks.0.conv1.0.weight"],
    )
    assert not np.array_equal(a[1], c[1])


class Stop(Exception):
    pass


def _stop_after_epoch_1(epoch, progress):
    if epoch == 1:
        raise Stop


def test_resume_with_worker_processes_is_identical(demo_root, tmp_path):
    """Persistent workers create their iterators once: resuming must not shift any random stream."""
    a = _run(demo_root, tmp_path, "a")
    cfg = tiny_cfg(demo_root, tmp_path, f"runs_dir={tmp_path / 'r'}", "model.aux_head=true", "data.num_workers=2")
    with pytest.raises(Stop):  # fails when the callback never fires
        train_fold(cfg, 0, on_epoch_end=_stop_after_epoch_1)
    train_fold(cfg, 0, resume=True)
    assert_same_weights(a[0]["state_dict"], load(cfg.fold_dir(0) / "last.pt")["state_dict"])
    assert np.array_equal(a[1], np.load(cfg.fold_dir(0) / "oof.npy"))
