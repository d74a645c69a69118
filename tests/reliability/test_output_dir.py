"""Item 15: a read-only output folder or a full disk stops ``kseg train`` at start, naming the path.

``kseg.train.preflight.check_output`` runs before any data is read: it probes the output folder with a
real write and compares the disk's free space with the checkpoints + OOF the folds will write.
"""

from __future__ import annotations

import errno
import logging
import os
from collections import namedtuple

import pytest
import torch

import kseg.train.fit
import kseg.train.preflight as preflight
from kseg.cli import main
from kseg.train.preflight import OutputError, check_output, estimate_bytes

from _reliab import DEMO_YAML, overrides, tiny_cfg

Usage = namedtuple("Usage", "total used free")


@pytest.fixture()
def no_training(monkeypatch):
    def never(*a, **k):
        raise AssertionError("training started although the output folder cannot take it")

    monkeypatch.setattr(kseg.train.fit, "train_folds", never)


def _train(demo_root, tmp_path, caplog, *extra: str) -> str:
    with caplog.at_level(logging.ERROR):
        assert main(["train", "-c", str(DEMO_YAML), "--fold", "0", *overrides(demo_root, tmp_path, *extra)]) == 1
    return caplog.text


def test_read_only_runs_dir(demo_root, tmp_path, caplog, no_training):
    tiny_cfg(demo_root, tmp_path)
    ro = tmp_path / "runs"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        text = _train(demo_root, tmp_path, caplog)
    finally:
        ro.chmod(0o755)
    assert f"output folder {ro} is read-only" in text and "runs_dir=" in text
    assert list(ro.iterdir()) == []


def test_runs_dir_is_a_file(demo_root, tmp_path, caplog, no_training):
    tiny_cfg(demo_root, tmp_path)
    (tmp_path / "runs").write_text("not a folder")
    assert f"output path {tmp_path / 'runs'} is not a folder" in _train(demo_root, tmp_path, caplog)


def test_disk_too_small_for_the_run(demo_root, tmp_path, caplog, monkeypatch, no_training):
    tiny_cfg(demo_root, tmp_path)
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda p: Usage(10**9, 10**9 - 50_000, 50_000))
    text = _train(demo_root, tmp_path, caplog)
    assert f"not enough disk space for {tmp_path / 'runs' / 'demo'}" in text and "50.0 KB free" in text


def test_disk_full_write_probe(demo_root, tmp_path, caplog, monkeypatch, no_training):
    """A disk with a few bytes left: the probe write itself fails with ENOSPC."""
    tiny_cfg(demo_root, tmp_path)
    real_open = open

    def full_open(path, mode="r", *a, **k):
        if "w" in mode and ".kseg-write-probe" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr(preflight, "open", full_open, raising=False)
    text = _train(demo_root, tmp_path, caplog)
    assert f"cannot write to output folder {tmp_path}" in text and "No space left on device" in text
    assert not list(tmp_path.glob(".kseg-write-probe*"))


def test_estimate_by_hand(demo_root, tmp_path):
    cfg = tiny_cfg(demo_root, tmp_path)  # adamw (2 slots), no EMA, submission size 128x256, 4 classes
    model = torch.nn.Linear(10, 5)  # 55 float32 parameters = 220 bytes
    state, last, oof = 220, 220 + 2 * 220, 8 * 4 * 128 * 256
    expected = int(((state + last + oof) * 2 + (last + oof)) * 1.1)
    assert estimate_bytes(cfg, model, {0: 8, 1: 8}) == expected


def test_existing_artefacts_count_as_free(demo_root, tmp_path, monkeypatch):
    """A rerun replaces its fold's files: their bytes are available to it."""
    cfg = tiny_cfg(demo_root, tmp_path)
    model = torch.nn.Linear(10, 5)
    need = estimate_bytes(cfg, model, {0: 8})
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda p: Usage(10**9, 0, need - 1000))
    with pytest.raises(OutputError, match="not enough disk space") as e:
        check_output(cfg, [0], model)
    assert e.value.errno == errno.ENOSPC
    cfg.fold_dir(0).mkdir(parents=True)
    (cfg.fold_dir(0) / "last.pt").write_bytes(b"\0" * 1000)
    check_output(cfg, [0], model)
