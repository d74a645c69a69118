"""kseg.train.truth: ground truth at the submission size and restoring predictions to it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from kseg.data.dataset import read_labels
from kseg.train.truth import TruthTable, restore_batch, truth_masks


def test_truth_masks_centre_aligned_resize_by_hand():
    # 2x4 masks, column-major 1-indexed RLE: "3 2" = column 1 (both rows); "5 1" = row 0, column 2
    full = truth_masks(["3 2", "5 1"], (2, 4), (2, 4))
    assert full.tolist() == [[[0, 1, 0, 0], [0, 1, 0, 0]], [[0, 0, 1, 0], [0, 0, 0, 0]]]
    # 2x4 -> 1x2: class 0 covers half of the left 2x2 block (kept), class 1 a quarter of the right one (not)
    small = truth_masks(["3 2", "5 1"], (2, 4), (1, 2))
    assert small.dtype == np.uint8 and small.tolist() == [[[1, 0]], [[0, 0]]]
    # columns 0 and 1 of two classes split the left block half and half: both keep it, unless exclusive
    assert truth_masks(["1 2", "3 2"], (2, 4), (1, 2)).tolist() == [[[1, 0]], [[1, 0]]]
    assert truth_masks(["1 2", "3 2"], (2, 4), (1, 2), exclusive=True).tolist() == [[[1, 0]], [[0, 0]]]
    big = truth_masks(["3 2", "5 1"], (2, 4), (4, 8))
    assert big[1].sum() == 4 and big[1][:2, 4:6].all()


def test_truth_table_masks_at_the_submission_size_with_or_without_native_sizes(demo_cfg):
    """The one truth builder of training validation (natives given) and tuning (natives looked up)."""
    spec = dataclasses.replace(
        demo_cfg.competition, classes=("a", "b"), class_labels=("1", "2"), image_size=(2, 4), submission_size=(1, 2)
    )
    cfg = demo_cfg.replace(competition=spec)
    labels = pd.DataFrame({"image_id": ["x", "e", "x"], "a": ["3 2", "", ""], "b": ["5 1", "", "1 8"]})
    table = TruthTable(cfg, labels)  # x listed twice: its first row counts
    got = table.masks(["e", "x"], (1, 2))
    assert got.dtype == bool and got.shape == (2, 2, 1, 2)
    assert not got[0].any() and np.array_equal(got[1], truth_masks(["3 2", "5 1"], (2, 4), (1, 2)))
    assert np.array_equal(table.masks(["e", "x"], (1, 2), [(2, 4), (2, 4)]), got)
    with pytest.raises(ValueError, match="OOF image 'zz' is not a training image of"):
        table.check(["x", "zz"])
    assert table.native_size("x", (1, 2)) == (2, 4)  # competition.image_size
    free = cfg.replace(competition=dataclasses.replace(spec, image_size=None, submission_size=None))
    assert TruthTable(free, labels).native_size("x", (3, 5)) == (3, 5)  # submissions at the native size
    demo = demo_cfg.replace(competition=dataclasses.replace(demo_cfg.competition, image_size=None))
    first = read_labels(demo).image_id[0]
    assert TruthTable(demo).native_size(first, (64, 128)) == (128, 256)  # read from the image file


def test_restore_batch_requires_one_submission_size(demo_cfg):
    cfg = demo_cfg.replace(
        competition=demo_cfg.competition.__class__(**{**demo_cfg.competition.__dict__, "submission_size": None})
    )
    probs = torch.rand(2, 4, 8, 8)
    out, size = restore_batch(probs, [(16, 16), (16, 16)], cfg)
    assert out.shape == (2, 4, 16, 16) and size == (16, 16)
    with pytest.raises(ValueError, match="image b: submission size"):
        restore_batch(probs, [(16, 16), (8, 16)], cfg, ids=["a", "b"])
