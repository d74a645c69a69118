"""kseg.infer.checkpoints: ``--folds`` parsing and finding fold checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from kseg.infer.checkpoints import find_checkpoints, parse_folds


def test_parse_folds_and_find_checkpoints(tmp_path: Path) -> None:
    assert parse_folds("0, 2,1") == (0, 2, 1) and parse_folds(None) == () and parse_folds("") == ()
    with pytest.raises(ValueError, match="'x'"):
        parse_folds("0,x")
    for k in (0, 2, 10):
        (tmp_path / "e" / f"fold{k}").mkdir(parents=True)
        (tmp_path / "e" / f"fold{k}" / "best.pt").write_bytes(b"")
    (tmp_path / "e" / "fold3").mkdir()  # no checkpoint inside: ignored
    assert [k for k, _ in find_checkpoints(tmp_path, "e")] == [0, 2, 10]
    assert [k for k, _ in find_checkpoints(tmp_path, "e", (2,))] == [2]
    with pytest.raises(FileNotFoundError, match="fold3/best.pt"):
        find_checkpoints(tmp_path, "e", (0, 3))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        find_checkpoints(tmp_path, "nope")
