"""DDP on CPU: torchrun with 2 gloo processes on the demo data; the checkpoint it writes loads and scores."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from kseg.data.dataset import SegDataset
from kseg.data.pixels import model_input
from kseg.models import load_checkpoint, predict_proba
from kseg.train.oof_store import read_oof

from _train_support import REPO, TINY, oof_score, repredict, tiny_config, val_ids


@pytest.mark.slow
def test_torchrun_two_gloo_processes(demo_root, tmp_path):
    cfg = tiny_config(demo_root, tmp_path)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "kseg.cli",
        "train",
        "-c",
        str(REPO / "configs/demo.yaml"),
        "--fold",
        "2",
        f"data.root={demo_root}",
        f"data.folds_csv={cfg.folds_path}",
        f"runs_dir={cfg.runs_dir}",
        *TINY,
        "train.epochs=2",
        "model.aux_head=true",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("fold 2: best dice") == 1  # only rank 0 reports
    d = cfg.fold_dir(2)
    assert sorted(p.name for p in d.iterdir()) == [
        "best.pt",
        "last.pt",
        "metrics.csv",
        "oof.npy",
        "oof_aux.npy",
        "oof_ids.csv",
    ]

    ids = val_ids(cfg, 2)
    oof, oof_ids = read_oof(d)
    assert oof_ids == ids and oof.shape == (len(ids), 4, 128, 256)
    metrics = pd.read_csv(d / "metrics.csv")
    assert metrics.epoch.tolist() == [1, 2]
    best = metrics.val_metric.max()
    assert best == pytest.approx(oof_score(oof, cfg, ids), abs=1e-6)  # metric reduced over both ranks' images
    # rows merged from both ranks sit at their image's position: the checkpoint alone re-predicts them
    assert np.abs(repredict(d / "best.pt", cfg, ids).astype(int) - oof).max() <= 1
    # aux rows of both ranks are put at their image's position too
    model, ccfg = load_checkpoint(d / "best.pt")
    ds = SegDataset(cfg, ids, train=False)
    xs = [model_input(ds[i]["image"][None], cfg.data.normalize) for i in range(len(ids))]
    aux = np.stack([predict_proba(model, x, ccfg.competition.mode)[1][0].numpy() for x in xs])
    assert np.abs(np.load(d / "oof_aux.npy").astype(int) - np.rint(aux * 255)).max() <= 1
