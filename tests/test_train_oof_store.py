"""kseg.train.oof_store: the streamed, atomically committed OOF store and its file names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kseg.train.oof_store import OofWriter, merge_parts, read_oof, to_uint8, write_aux, write_ids


def test_oof_writer_streams_and_commits_atomically(tmp_path):
    target = tmp_path / "oof.npy"
    w = OofWriter(target, (3, 1, 2, 2))
    w.write(0, np.full((2, 1, 2, 2), 7, np.uint8))
    assert not target.exists()
    with pytest.raises(RuntimeError, match="2 of 3 rows"):
        w.commit()
    w.write(2, np.full((1, 1, 2, 2), 9, np.uint8))
    w.commit()
    arr = np.load(target, mmap_mode="r")
    assert arr[:, 0, 0, 0].tolist() == [7, 7, 9] and sorted(p.name for p in tmp_path.iterdir()) == ["oof.npy"]
    w2 = OofWriter(target, (1, 1, 2, 2))
    w2.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["oof.npy"]


def test_merge_parts_puts_rank_rows_in_place(tmp_path):
    parts = []
    for rank, rows in enumerate([[0, 2, 4], [1, 3]]):
        w = OofWriter(tmp_path / f"p{rank}.npy", (len(rows), 1, 1, 1))
        w.write(0, np.array(rows, np.uint8).reshape(-1, 1, 1, 1) * 10)
        parts.append((w.close(), rows))
    merge_parts(parts, tmp_path / "oof.npy", 5, chunk=2)
    assert np.load(tmp_path / "oof.npy").ravel().tolist() == [0, 10, 20, 30, 40]
    write_ids(tmp_path / "oof_ids.csv", list("abcde"))
    assert read_oof(tmp_path)[1] == list("abcde")


def test_to_uint8_rounds_probabilities_and_write_aux_saves_them(tmp_path):
    q = to_uint8(torch.tensor([[0.0, 0.5, 1.0, 0.999]]))
    assert q.dtype == np.uint8 and q.tolist() == [[0, 128, 255, 255]]  # round(p * 255)
    write_aux(tmp_path / "oof_aux.npy", q)
    assert np.load(tmp_path / "oof_aux.npy").tolist() == [[0, 128, 255, 255]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["oof_aux.npy"]  # no temp file left
    with pytest.raises(ValueError, match="uint8 \\[N, C\\]"):
        write_aux(tmp_path / "bad.npy", q.astype(np.float32))
