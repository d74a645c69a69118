"""Items 2 and 3: a failure between temp write and rename, and truncated / corrupt checkpoints.

The real SIGKILL between write and rename is tests/reliability/test_kill_resume.py::
test_sigkill_between_temp_write_and_rename; here the failure is injected in-process at ``os.replace``
for every kind of artefact, and damaged files are fed to every reader.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch

import kseg.atomic
import kseg.config
from kseg.atomic import CorruptFileError, torch_load
from kseg.cli import main
from kseg.models import build_model, load_checkpoint, read_state_dict, save_checkpoint
from kseg.train.oof_store import OofWriter
from kseg.train.preflight import remove_stale_temps
from kseg.train.state import load_last, write_metrics_csv

from _reliab import DEMO_YAML, assert_same_weights, overrides, tiny_cfg


class Crash(OSError):
    pass


def crash_on_replace(src, dst):
    """Stands in for ``os.replace``: a crash after the temp file is complete, before the rename."""
    raise Crash(f"injected crash renaming {src} -> {dst}")


def _model_and_cfg(demo_root, tmp_path):
    cfg = tiny_cfg(demo_root, tmp_path)
    torch.manual_seed(0)
    return build_model(cfg), cfg


def test_crash_before_rename_keeps_previous_checkpoints(demo_root, tmp_path, monkeypatch):
    model, cfg = _model_and_cfg(demo_root, tmp_path)
    d = tmp_path / "fold0"
    save_checkpoint(d / "best.pt", model, cfg, epoch=1)
    save_checkpoint(d / "last.pt", model, cfg, epoch=1, optimizer={"state": {}})
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    monkeypatch.setattr(kseg.atomic.os, "replace", crash_on_replace)  # os is shared: undone right after
    for name in ("best.pt", "last.pt"):
        with pytest.raises(Crash):
            save_checkpoint(d / name, model, cfg, epoch=2)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before  # untouched, and no temp file left over
    old, _ = load_checkpoint(d / "best.pt")
    assert torch_load(d / "last.pt")["epoch"] == 1
    assert not torch.equal(old.state_dict()["net.encoder.conv1.weight"], model.state_dict()["net.encoder.conv1.weight"])


def test_crash_before_rename_keeps_previous_oof_and_metrics(tmp_path, monkeypatch):
    oof = tmp_path / "oof.npy"
    np.save(oof, np.full((2, 1, 2, 2), 7, np.uint8))
    metrics = tmp_path / "metrics.csv"
    write_metrics_csv(
        metrics, [{"epoch": 1, "lr": 0.1, "train_loss": 1, "val_loss": 1, "val_metric": 0.5, "seconds": 1}]
    )
    text = metrics.read_text()
    w = OofWriter(oof, (2, 1, 2, 2))
    w.write(0, np.zeros((2, 1, 2, 2), np.uint8))
    monkeypatch.setattr("kseg.train.oof_store.commit", lambda tmp, path: crash_on_replace(tmp, path))
    with pytest.raises(Crash):
        w.commit()
    w.discard()
    monkeypatch.setattr(kseg.config.os, "replace", crash_on_replace)
    with pytest.raises(Crash):
        write_metrics_csv(metrics, [])
    monkeypatch.undo()
    assert np.load(oof).ravel().tolist() == [7] * 8 and metrics.read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv", "oof.npy"]


def test_stale_temp_files_of_a_killed_write_are_removed(tmp_path):
    for name in (".last.pt.ab12.tmp", ".oof.npy.x9.npy", ".best.pt.q.tmp", "keep.tmp", ".other.tmp", "last.pt"):
        (tmp_path / name).write_bytes(b"x")
    removed = remove_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == [".best.pt.q.tmp", ".last.pt.ab12.tmp", ".oof.npy.x9.npy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp", "keep.tmp", "last.pt"]


# --------------------------------------------------------------------------- damaged files


class Foreign:
    """A pickled object a weights-only load must refuse."""


def _flip(data: bytes, pos: int) -> bytes:
    return data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1 :]


DAMAGE = {
    "truncated": (lambda b: b[: len(b) // 2], "truncated or corrupt; RuntimeError: PytorchStreamReader failed"),
    "zero-byte": (lambda b: b"", "empty file (0 bytes)"),
    "garbage": (lambda b: os.urandom(64), "cannot read the checkpoint"),
    "flip-header": (lambda b: _flip(b, 30), "corrupt zip structure"),
    "flip-data": (lambda b: _flip(b, len(b) // 2), "fails its CRC check"),  # torch.load alone accepts it
}


@pytest.fixture()
def good_checkpoint(demo_root, tmp_path):
    model, cfg = _model_and_cfg(demo_root, tmp_path)
    path = tmp_path / "good.pt"
    save_checkpoint(path, model, cfg, epoch=1)
    return path, model


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_checkpoint_names_the_file(good_checkpoint, tmp_path, kind):
    good, _ = good_checkpoint
    damage, words = DAMAGE[kind]
    bad = tmp_path / f"{kind}.pt"
    bad.write_bytes(damage(good.read_bytes()))
    with pytest.raises(CorruptFileError) as e:
        load_checkpoint(bad)
    assert str(e.value).startswith(f"{bad}: ") and words in str(e.value)
    assert "retrain that fold" in str(e.value)
    assert "weights_only=False" not in str(e.value)  # torch's unsafe advice is not passed on
    with pytest.raises(CorruptFileError, match=str(bad)):
        read_state_dict(bad)  # model.encoder_weights files get the same treatment


def test_checkpoint_with_foreign_objects_is_refused(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"state_dict": {}, "config": {}, "hook": Foreign()}, path)
    with pytest.raises(CorruptFileError, match=r"pickled.pt: .*other than tensors and plain data.*Foreign"):
        load_checkpoint(path)


def test_good_checkpoint_still_loads(good_checkpoint):
    path, model = good_checkpoint
    loaded, _ = load_checkpoint(path)
    assert_same_weights(loaded.state_dict(), model.state_dict())


def test_resume_from_a_truncated_last_pt_says_what_to_do(demo_root, tmp_path, good_checkpoint, caplog):
    cfg = tiny_cfg(demo_root, tmp_path)
    last = cfg.fold_dir(0) / "last.pt"
    last.parent.mkdir(parents=True)
    last.write_bytes(good_checkpoint[0].read_bytes()[:1000])
    with pytest.raises(CorruptFileError) as e:
        load_last(last)
    msg = str(e.value)
    assert msg.startswith(f"--resume: {last}: cannot read the checkpoint (truncated or corrupt")
    assert "run the fold again without --resume" in msg and "copy them aside first" in msg
    with caplog.at_level(logging.ERROR):
        assert main(["train", "-c", str(DEMO_YAML), "--fold", "0", "--resume", *overrides(demo_root, tmp_path)]) == 1
    assert f"--resume: {last}: cannot read the checkpoint" in caplog.text
    assert last.stat().st_size == 1000  # left as it was for the user to inspect


def test_resume_without_any_checkpoint_says_what_to_do(demo_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="run without --resume to train the fold from the start"):
        load_last(tiny_cfg(demo_root, tmp_path).fold_dir(0) / "last.pt")


def test_predict_with_a_corrupt_best_pt_names_it(demo_root, tmp_path, caplog):
    cfg = tiny_cfg(demo_root, tmp_path)
    best = cfg.fold_dir(0) / "best.pt"
    best.parent.mkdir(parents=True)
    best.write_bytes(b"PK\x03\x04 not really a zip")
    argv = ["predict", "-c", str(DEMO_YAML), "--out", str(tmp_path / "sub.csv"), *overrides(demo_root, tmp_path)]
    with caplog.at_level(logging.ERROR):
        assert main(argv) == 1
    assert f"{best}: cannot read the checkpoint" in caplog.text and not (tmp_path / "sub.csv").exists()
