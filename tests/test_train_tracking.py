"""kseg.train.tracking: the never-fatal wandb guard and the image helpers of the logged examples.

A real offline wandb run and failures injected into wandb itself are in tests/reliability/test_wandb_offline.py.
"""

from __future__ import annotations

import logging

import numpy as np

from kseg.config import load_config
from kseg.train.tracking import Tracker, WandbTracker, display_image, label_map, start_tracker

from conftest import REPO


def test_label_map_numbers_classes_from_one_and_the_highest_class_wins():
    masks = np.zeros((3, 2, 3), np.uint8)
    masks[0, 0, :2] = 1
    masks[2, 0, 1:] = 1  # overlaps class 0 at (0, 1)
    out = label_map(masks)
    assert out.dtype == np.uint8 and out.tolist() == [[1, 3, 3], [0, 0, 0]]


def test_display_image_stretches_min_max_to_uint8_hwc():
    image = np.stack([np.array([[-1.0, 0.0], [0.5, 1.0]])] * 3)  # [3, 2, 2]
    out = display_image(image)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[..., 0].tolist() == [[0, 128], [191, 255]]
    assert display_image(np.zeros((3, 2, 2))).max() == 0  # a flat image does not divide by zero


def test_disabled_wandb_gives_the_no_op_tracker(tmp_path):
    cfg = load_config(REPO / "configs/demo.yaml", ["wandb.mode=disabled", f"runs_dir={tmp_path}"])
    tracker = start_tracker(cfg, 0)
    assert type(tracker) is Tracker and tracker.run_id is None
    tracker.log({"a": 1.0}, 0)
    tracker.finish()
    assert not list(tmp_path.iterdir())  # nothing written


class _FlakyRun:
    id = "run-1"

    def __init__(self) -> None:
        self.logged: list[dict] = []

    def log(self, metrics: dict, step: int) -> None:
        if "boom" in metrics:
            raise RuntimeError("server said no")
        self.logged.append(metrics)


def test_a_wandb_failure_is_a_warning_and_stops_tracking(caplog):
    run = _FlakyRun()
    tracker = WandbTracker(run, ("a", "b"))
    assert tracker.run_id == "run-1" and tracker.class_labels == {0: "background", 1: "a", 2: "b"}
    tracker.log({"x": 1.0}, 0)
    with caplog.at_level(logging.WARNING, logger="kseg"):
        tracker.log({"boom": 1.0}, 1)
    assert "wandb log failed (RuntimeError: server said no); tracking stops" in caplog.text
    tracker.log({"x": 2.0}, 2)  # no longer sent
    assert run.logged == [{"x": 1.0}] and tracker.run is None
