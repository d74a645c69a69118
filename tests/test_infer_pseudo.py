"""kseg.infer.pseudo: confident pixel shares and the pseudo-label writer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from kseg.config import Config
from kseg.infer.pseudo import PseudoLabelWriter, confident_share


def test_confident_share_hand_computed() -> None:
    p = torch.tensor([[[0.95, 0.5], [0.05, 0.9]], [[1.0, 0.0], [0.99, 0.01]]])  # [C=2, 2, 2]
    assert confident_share(p, 0.9).tolist() == [0.5, 1.0]  # 0.9 is not > 0.9


def test_pseudo_label_writer_keeps_confident_images_at_native_size(tmp_path: Path, demo_cfg: Config) -> None:
    spec = dataclasses.replace(
        demo_cfg.competition, classes=("a", "b"), class_labels=("1", "2"), image_size=(4, 6), submission_size=(2, 3)
    )
    w = PseudoLabelWriter(spec, tmp_path / "pl.csv", min_fraction=0.9)
    m = np.zeros((2, 2, 3), dtype=np.uint8)
    m[0, 0, 0] = 1  # top-left submission pixel -> a 2x2 block at native size
    assert w.add("keep.jpg", m, np.array([0.95, 1.0]), (4, 6))
    assert not w.add("drop.jpg", m, np.array([0.95, 0.5]), (4, 6))  # class b not confident
    assert w.add("empty.jpg", np.zeros_like(m), np.array([1.0, 1.0]), (4, 6))
    w.close()
    # column-major 4x6: pixels (0,0),(1,0) = 1-2 and (0,1),(1,1) = 5-6
    assert (tmp_path / "pl.csv").read_text() == "ImageId,ClassId,EncodedPixels\nkeep.jpg,1,1 2 5 2\nempty.jpg,1,\n"
    assert (w.kept, w.seen) == (2, 3)
