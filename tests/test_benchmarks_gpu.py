"""benchmarks/gpu.sh: the --cpu-smoke run exercises every stage on the CPU and never writes results/gpu.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO

GPU_SH = REPO / "benchmarks" / "gpu.sh"
GPU_JSON = REPO / "benchmarks" / "results" / "gpu.json"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run([str(GPU_SH), *args], capture_output=True, text=True, env=env, timeout=600)


def test_cpu_smoke_runs_every_stage(tmp_path) -> None:
    before = GPU_JSON.stat().st_mtime_ns if GPU_JSON.exists() else None
    out = tmp_path / "gpu_cpu_smoke.json"
    res = _run("--cpu-smoke", "--out", str(out))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    records = json.loads(out.read_text())
    names = [r["name"] for r in records]
    assert names == [
        "train_tgs_128_fp32",
        "train_tgs_128_amp",
        "infer_tgs_128_hflip_vs_none",
        "loader_vs_gpu_step_tgs_128",
        "tgs_one_epoch_amp_vs_fp32_score",
    ]
    assert all(r["machine"]["cpu_smoke"] and r["machine"]["gpu"] is None for r in records)  # never GPU figures
    assert all(r["ratio"] > 0 for r in records)
    epoch = records[-1]
    assert epoch["real_data"] is False and 0 <= epoch["fp32"]["val_metric"] <= 1
    assert (GPU_JSON.stat().st_mtime_ns if GPU_JSON.exists() else None) == before


def _driver():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import gpu_bench

    return gpu_bench


def test_cpu_smoke_refuses_the_gpu_results_file(capsys) -> None:
    assert _driver().main(["--cpu-smoke", "--out", str(GPU_JSON)]) == 2
    assert "never results/gpu.json" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the real benchmark")
def test_without_cuda_the_gpu_run_refuses(capsys) -> None:
    assert _driver().main([]) == 2
    assert "no CUDA device" in capsys.readouterr().err
