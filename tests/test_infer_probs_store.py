"""kseg.infer.probs_store: ``--save-probs`` writer and reader round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kseg.infer.probs_store import ProbsWriter, read_probs


def test_probs_writer_round_trip(tmp_path: Path) -> None:
    w = ProbsWriter(tmp_path / "p", ["x", "y"])
    a = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    w.add("im1.jpg", a, np.array([0.25, 0.5]))
    w.add("im2.jpg", a[:, :1], np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="uint8"):
        w.add("bad", a.astype(np.float32))
    w.close()
    got = list(read_probs(tmp_path / "p"))
    assert [g[0] for g in got] == ["im1.jpg", "im2.jpg"]
    assert np.array_equal(got[0][1], a) and np.array_equal(got[1][1], a[:, :1])
    assert got[0][2].tolist() == [0.25, 0.5]
    assert pd.read_csv(tmp_path / "p" / "ids.csv").columns.tolist() == [
        "image_id",
        "file",
        "height",
        "width",
        "aux_x",
        "aux_y",
    ]
