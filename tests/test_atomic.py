"""kseg.atomic: content, permissions (0o666 & ~umask, like ``open``), no temp file or half file after a failure."""

from __future__ import annotations

import csv
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import kseg.atomic
from kseg.atomic import AtomicFile, atomic_path, atomic_torch_save, atomic_write_bytes, atomic_write_text, temp_path
from kseg.config import Config
from kseg.train.preflight import remove_stale_temps

UMASKS = [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)]


class BoomError(RuntimeError):
    pass


@pytest.fixture()
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under ``request.param`` as the process umask (restored after)."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def plain_open_mode(folder: Path) -> int:
    """The mode a plain ``open(..., "w")`` gives under the current umask: what atomic writes must match."""
    ref = folder / "reference-open"
    ref.write_text("")
    try:
        return mode(ref)
    finally:
        ref.unlink()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_text_bytes_and_streamed_content(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "sub" / "a.txt", "héllo\n")  # parent folders are created
    assert (tmp_path / "sub" / "a.txt").read_text() == "héllo\n"
    atomic_write_text(tmp_path / "crlf.csv", "a,b\r\n1,2\r\n", newline="")
    assert (tmp_path / "crlf.csv").read_bytes() == b"a,b\r\n1,2\r\n"
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01\xff")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01\xff"
    atomic_write_bytes(tmp_path / "x.npy", lambda f: np.save(f, np.arange(6, dtype=np.uint8).reshape(2, 3)))
    assert np.load(tmp_path / "x.npy").tolist() == [[0, 1, 2], [3, 4, 5]]
    with AtomicFile(tmp_path / "s.csv", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([["id", "rle"], ["a", "1 2"]])
        assert not (tmp_path / "s.csv").exists()  # nothing at the path before the block ends
    assert (tmp_path / "s.csv").read_text() == "id,rle\na,1 2\n"
    atomic_write_text(tmp_path / "a.txt", "new")  # an existing file is replaced
    assert (tmp_path / "a.txt").read_text() == "new"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("umask", [u for u, _ in UMASKS], indirect=True, ids=[oct(u) for u, _ in UMASKS])
def test_files_get_the_mode_of_a_plain_open(tmp_path: Path, umask: int) -> None:
    expected = dict(UMASKS)[umask]
    assert plain_open_mode(tmp_path) == expected
    atomic_write_text(tmp_path / "t.txt", "x")
    atomic_write_bytes(tmp_path / "b.bin", b"x")
    with AtomicFile(tmp_path / "f.csv") as f:
        f.write("x")
    with atomic_path(tmp_path / "p.npy", suffix=".npy") as tmp:
        assert mode(tmp) == expected  # the temp file already has the final mode
        np.save(tmp, np.zeros(2))
    atomic_torch_save({"w": torch.zeros(2)}, tmp_path / "c.pt")
    atomic_write_text(tmp_path / "t.txt", "replaced")  # replacing keeps the mode
    names = ("t.txt", "b.bin", "f.csv", "p.npy", "c.pt")
    assert {p.name: mode(p) for p in tmp_path.iterdir()} == {n: expected for n in names}


def test_failure_midway_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub.csv"
    target.write_text("old\n")
    with pytest.raises(BoomError), AtomicFile(target) as f:
        f.write("half of the new")
        f.flush()
        raise BoomError()

    def half(f):  # type: ignore[no-untyped-def]
        f.write(b"half")
        raise BoomError()

    with pytest.raises(BoomError):
        atomic_write_bytes(target, half)
    with pytest.raises(BoomError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise BoomError()
    assert target.read_text() == "old\n" and leftovers(tmp_path) == []
    with pytest.raises(BoomError), AtomicFile(tmp_path / "new.csv") as f:  # no previous file: none appears
        raise BoomError()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub.csv"]


def test_crash_at_the_rename_leaves_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "postprocess.json"
    target.write_text("{}")

    def crash(src: object, dst: object) -> None:
        raise BoomError(f"rename {src} -> {dst}")

    monkeypatch.setattr(kseg.atomic.os, "replace", crash)
    with pytest.raises(BoomError):
        atomic_write_text(target, '{"new": 1}')
    w = AtomicFile(target)
    w.file.write("x")
    with pytest.raises(BoomError):
        w.commit()
    monkeypatch.undo()
    assert target.read_text() == "{}" and leftovers(tmp_path) == []


def test_commit_and_abort_protocol(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb', got 'a'"):
        AtomicFile(tmp_path / "x", "a")
    w = AtomicFile(tmp_path / "x", "wb")
    w.file.write(b"1")
    assert w.commit() == tmp_path / "x" and (tmp_path / "x").read_bytes() == b"1"
    with pytest.raises(RuntimeError, match="already committed or aborted"):
        w.commit()
    w.abort()  # after a commit: nothing to drop, the file stays
    a = AtomicFile(tmp_path / "y")
    a.abort()
    a.abort()  # twice is fine
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def test_temp_names_are_the_ones_a_resumed_run_cleans_up(tmp_path: Path) -> None:
    artefacts = [("last.pt", ".tmp"), ("oof.npy", ".npy"), ("metrics.csv", ".tmp")]
    made = [temp_path(tmp_path / name, suffix) for name, suffix in artefacts]
    assert all(p.parent == tmp_path and p.name.startswith(".") for p in made)
    assert len({p.name for p in made}) == 3
    assert sorted(remove_stale_temps(tmp_path)) == sorted(made)


# --------------------------------------------------------------------------- artefacts written by the stages


@pytest.mark.parametrize("umask", [0o022], indirect=True)
def test_submission_pseudo_labels_and_probs_are_0644(demo_cfg: Config, tmp_path: Path, umask: int) -> None:
    """The fake-member prediction of test_infer_pipeline: submission, pseudo-label csv and --save-probs files."""
    from kseg.infer.ensemble import Ensemble
    from kseg.infer.pipeline import predict_submission

    from _infer_support import LOG3, members

    run_dir = demo_cfg.run_dir
    run_dir.mkdir(parents=True)
    classes = [{"name": str(i), "params": {"threshold": 0.7}} for i in range(4)]
    (run_dir / "postprocess.json").write_text(json.dumps({"classes": classes}))
    ens = Ensemble(demo_cfg, members(demo_cfg, [("a", LOG3)]), tta="none")
    out = tmp_path / "out"
    res = predict_submission(
        demo_cfg,
        ensemble=ens,
        out=out / "sub.csv",
        save_probs=out / "probs",
        pseudo_labels=out / "pl.csv",
        confidence=0.7,
        progress=False,
    )
    assert res.pseudo_kept == 6
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {out / "sub.csv", out / "pl.csv", out / "probs" / "ids.csv"} <= set(files) and len(files) == 3 + 6
    assert {str(p.relative_to(out)): oct(mode(p)) for p in files} == {str(p.relative_to(out)): "0o644" for p in files}


@pytest.mark.parametrize("umask", [0o022], indirect=True)
def test_tune_outputs_and_plots_are_0644(tmp_path: Path, umask: int) -> None:
    """The tiny competition of test_tune, tuned, with plots."""
    from test_tune import _random_case, _write_competition, _write_oof

    from kseg.tune.report import write_outputs
    from kseg.tune.run import tune

    truth, probs, aux = _random_case(np.random.default_rng(5), 6)
    cfg, ids, folds = _write_competition(tmp_path / "comp", truth, "dice", n_folds=2)
    _write_oof(cfg, "exp", ids, folds, probs, aux, seed=0)
    paths = write_outputs(cfg, tune(cfg, progress=False), plots=True)
    assert {"plot_a", "plot_b", "postprocess", "csv"} <= set(paths)
    assert paths["plot_a"].read_bytes()[:4] == b"\x89PNG"
    assert {k: oct(mode(p)) for k, p in paths.items()} == {k: "0o644" for k in paths}
    assert leftovers(cfg.run_dir) == []
