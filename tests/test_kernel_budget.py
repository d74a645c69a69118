"""Kernel run-time budget: the estimate's arithmetic, the refusal and --force, the measured inputs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from kseg.cli import main
from kseg.competition import list_test_ids
from kseg.config import load_config
from kseg.kernel import budget
from kseg.kernel.budget import KernelBudgetError, MemberCost, RunTimeEstimate, check_budget, estimate_run_time
from kseg.kernel.build import build_kernel

from conftest import REPO


def _estimate(limit_h: float = 9.0, speedup: float = 10.0) -> RunTimeEstimate:
    return RunTimeEstimate(
        images=1000,
        members=(MemberCost("a", folds=5, views=2, forward_s=0.1), MemberCost("b", folds=3, views=1, forward_s=0.2)),
        io_s=0.04,
        speedup=speedup,
        startup_s=120.0,
        limit_s=3600.0 * limit_h,
        device="cpu",
    )


def test_estimate_arithmetic_by_hand() -> None:
    e = _estimate()
    # per image: run a 5 x 2 x 0.1 = 1.0 s, run b 3 x 1 x 0.2 = 0.6 s; / speedup 10 = 0.16 s; + io 0.04 s
    assert math.isclose(e.model_s, 0.16)
    assert math.isclose(e.total_s, 120 + 1000 * 0.2)
    assert math.isclose(e.local_total_s, 120 + 1000 * 1.64)  # a local (CPU) rehearsal: no speedup
    assert e.fits
    text = e.describe()
    assert "a: 5 fold(s) x 2 view(s) x 100.0 ms/image = 0.03 h" in text  # 1000 x 1.0 s / 10 = 100 s
    assert "total 0.09 h of the 9 h limit (fits)" in text


def test_over_the_limit_is_refused_unless_forced() -> None:
    e = _estimate(limit_h=0.05)  # 180 s < 320 s
    assert not e.fits and check_budget(_estimate(), force=False) == []
    with pytest.raises(KernelBudgetError, match=r"(?s)0\.09 h exceeds kernel\.time_limit_hours=0\.05.*--force"):
        check_budget(e, force=False)
    (warning,) = check_budget(e, force=True)
    assert "built anyway" in warning and "DOES NOT FIT" in warning


def _cfg(demo_root: Path, tmp_path: Path, *extra: str):
    return load_config(
        REPO / "configs" / "demo.yaml",
        [f"data.root={demo_root}", f"runs_dir={tmp_path / 'runs'}", f"kernel.dir={tmp_path / 'kernels'}", *extra],
    )


def _fake_folds(cfg, folds=(0, 1)) -> None:
    for k in folds:
        cfg.fold_dir(k).mkdir(parents=True, exist_ok=True)
        (cfg.fold_dir(k) / "best.pt").write_bytes(b"build copies checkpoints without reading them")


def test_estimate_measures_the_shipped_ensemble(demo_root: Path, tmp_path: Path, monkeypatch) -> None:
    cfg = _cfg(demo_root, tmp_path, "kernel.test_images=100064", "train.device=cpu", "data.image_size=[32,64]")
    e = estimate_run_time(cfg, {"demo": [0, 1, 2]}, "hflip")
    (m,) = e.members
    assert (e.images, m.folds, m.views, e.speedup, e.device) == (100064, 3, 2, 10.0, "cpu")
    assert 0 < m.forward_s < 5 and 0 < e.io_s < 5  # measured here, per image
    assert e.startup_s == 120 and e.limit_s == 9 * 3600
    monkeypatch.setattr(budget, "forward_seconds", lambda *a: 0.5)
    local = estimate_run_time(cfg.replace(kernel=cfg.kernel.__class__(enable_gpu=False)), {"demo": [0]}, "none")
    assert (
        local.speedup == 1.0
        and local.model_s == 0.5
        and local.images == len(list_test_ids(cfg.competition, demo_root)) > 0
    )


def test_build_refuses_an_ensemble_over_the_limit(demo_root: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(budget, "forward_seconds", lambda *a: 1.0)  # 1 s per image and view
    cfg = _cfg(demo_root, tmp_path, "kernel.test_images=10000", "kernel.gpu_speedup=1")
    _fake_folds(cfg)
    # 10000 images x 2 folds x 2 views x 1 s = 11.1 h > 9 h: nothing is written
    with pytest.raises(KernelBudgetError, match="exceeds kernel.time_limit_hours=9"):
        build_kernel(cfg, tta="hflip", wheels=(), user="someone")
    assert not (tmp_path / "kernels" / "demo").exists()
    args = ["kernel", "build", "-c", str(REPO / "configs" / "demo.yaml"), "--tta", "hflip", "--no-wheels"]
    args += [f"data.root={demo_root}", f"runs_dir={tmp_path / 'runs'}", f"kernel.dir={tmp_path / 'kernels'}"]
    args += ["kernel.test_images=10000", "kernel.gpu_speedup=1", "--user", "someone"]
    assert main(args) != 0
    assert main([*args, "--force"]) == 0
    out = capsys.readouterr().out
    assert "total 11." in out and "of the 9 h limit (DOES NOT FIT)" in out
    assert (tmp_path / "kernels" / "demo" / "kernel").is_dir()
    # Without TTA it fits: 2 x 1 x 1 s x 10000 = 5.6 h
    result = build_kernel(cfg, tta="none", wheels=(), user="someone")
    assert result.estimate is not None and result.estimate.fits
    assert not [w for w in result.warnings if "time_limit" in w]
