"""Shared fixtures: the repo's configs, the synthetic demo competition, the real data in ../shared."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
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


@pytest.fixture()
def tiny_runs(demo_cfg):
    """Two fold checkpoints of a tiny random U-Net (image_size 64x128) under the demo config's runs dir
    (kseg.infer and `kseg predict` tests)."""
    import torch

    from kseg.models import build_model, save_checkpoint

    from _infer_support import with_size

    cfg = with_size(demo_cfg, (64, 128))
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, kwargs={"encoder_depth": 3, "decoder_channels": [16, 8, 8]}))
    for fold in (0, 1):
        torch.manual_seed(fold)
        save_checkpoint(cfg.fold_dir(fold) / "best.pt", build_model(cfg), cfg, epoch=1)
    return cfg


LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "", None}


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0]
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in LOCAL_HOSTS


@pytest.fixture()
def socket_guard(monkeypatch):
    """Record and refuse every non-loopback connect / DNS lookup made from this process."""
    attempts: list[str] = []
    real_connect, real_connect_ex, real_getaddrinfo = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def connect(self, address):
        if not _is_local(address):
            attempts.append(f"connect {address}")
            raise OSError(101, f"test socket guard: network blocked ({address})")
        return real_connect(self, address)

    def connect_ex(self, address):
        if not _is_local(address):
            attempts.append(f"connect_ex {address}")
            return 101
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in LOCAL_HOSTS and not _is_local((host,)):
            attempts.append(f"getaddrinfo {host}")
            raise socket.gaierror(socket.EAI_NONAME, f"test socket guard: no DNS ({host})")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts
