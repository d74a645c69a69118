"""Shared fixtures: the repo's configs, the synthetic demo competition, the real data in ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network: albumentations checks for updates on import


def shared_dataset(name: str) -> Path:
    """Path of a real dataset in ../shared/data, skipping the test when it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real dataset {path} not available")
    return path


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic demo competition (24 train, 6 test images at 128x256), written once."""
    from kseg.demo.synthetic import make_demo

    return make_demo(tmp_path_factory.mktemp("demo"), seed=1, n_train=24, n_test=6)


@pytest.fixture()
def demo_cfg(demo_root: Path, tmp_path: Path):
    """Demo config on ``demo_root`` with runs and folds.csv in this test's tmp_path."""
    from kseg.config import load_config

    return load_config(
        REPO / "configs" / "demo.yaml",
        [f"data.root={demo_root}", f"data.folds_csv={tmp_path / 'folds.csv'}", f"runs_dir={tmp_path / 'runs'}"],
    )
