"""Tiled prediction of gigapixel slides: peak RSS of `kseg predict` at 20,000^2 and 30,000^2, and throughput
of the tiled path against a naive loop on the same slide.

Synthetic HuBMAP-like slides (pink tissue, purple discs) are written as tiled RGB TIFFs tile by tile (never
whole in memory), with one tiny random checkpoint of configs/hubmap/unet-tiles.yaml (resnet18 depth 3,
tile 256 at downscale 4, overlap 64, Gaussian blend, no TTA). `kseg predict` runs in a fresh process
(``data.num_workers=0``, so the one process holds everything) and its peak RSS is read from
``getrusage(RUSAGE_CHILDREN)``. The naive loop reads the slide whole (``tifffile.imread``), predicts the same
windows with the same ensemble into a float32 canvas and weight map in RAM, thresholds and encodes one-shot.
Records: ``slide_predict_rss`` ratio = 3 GiB / peak RSS at 20,000^2, goal 1 (under 3 GB);
``slide_predict_rss_flat`` ratio = 1.10 / (RSS 30,000^2 / RSS 20,000^2), goal 1 (flat as the area grows 2.25x);
``slide_predict_throughput`` ratio = naive seconds / tiled seconds on a ``--naive-size`` slide, goal 0.8.

    .venv/bin/python benchmarks/slide_predict.py [--sizes 20000 30000] [--naive-size 12000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import REPO, write_results

CONFIG = REPO / "configs" / "hubmap" / "unet-tiles.yaml"
OVERRIDES = [
    "model.encoder=resnet18",
    "model.encoder_weights=none",
    "model.kwargs={encoder_depth: 3, decoder_channels: [32, 16, 8]}",
    "tile.size=256",
    "tile.downscale=4",
    "tile.overlap=64",
    "tile.window=gaussian",
    "predict.batch_size=16",
    "predict.tta=none",
    "data.num_workers=0",
    "train.device=cpu",
]
WRAPPER = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
if rc.returncode:
    sys.stderr.write(rc.stderr[-4000:])
    sys.exit(rc.returncode)
print(json.dumps({"maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "seconds": time.perf_counter() - t}))
"""


def write_slide(path: Path, size: int, tile: int = 512) -> None:
    """An RGB [size, size, 3] tiled TIFF of discs on tissue, generated tile by tile."""
    import tifffile

    yy, xx = np.mgrid[:tile, :tile].astype(np.float32)
    pitch = 400

    def tiles():
        for ty in range(0, size, tile):
            for tx in range(0, size, tile):
                gy, gx = (yy + ty) % pitch - pitch / 2, (xx + tx) % pitch - pitch / 2
                disc = (gy * gy + gx * gx) < (60 + 40 * np.sin((ty + tx) / 3000.0)) ** 2
                out = np.empty((tile, tile, 3), np.uint8)
                out[:] = np.where(disc[..., None], np.uint8([140, 70, 150]), np.uint8([228, 176, 204]))
                yield out

    tifffile.imwrite(path, tiles(), shape=(size, size, 3), dtype=np.uint8, tile=(tile, tile), photometric="rgb")


def make_competition(root: Path, size: int) -> str:
    import pandas as pd

    slide_id = f"s{size}"
    (root / "test").mkdir(parents=True, exist_ok=True)
    write_slide(root / "test" / f"{slide_id}.tiff", size)
    pd.DataFrame({"id": [slide_id], "predicted": [""]}).to_csv(root / "sample_submission.csv", index=False)
    return slide_id


def make_checkpoint(runs: Path) -> None:
    import torch

    from kseg.config import load_config
    from kseg.models import build_model, save_checkpoint

    cfg = load_config(CONFIG, [f"runs_dir={runs}", *OVERRIDES])
    torch.manual_seed(0)
    save_checkpoint(cfg.fold_dir(0) / "best.pt", build_model(cfg), cfg, epoch=0)


def measure_predict(root: Path, runs: Path, out: Path) -> dict:
    ov = [f"data.root={root}", f"runs_dir={runs}", f"tile.canvas_dir={root / 'canvas'}", *OVERRIDES]
    cmd = [sys.executable, "-m", "kseg.cli", "predict", "-c", str(CONFIG), "--out", str(out), "--no-progress", *ov]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    res = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True, cwd=REPO, env=env)
    if res.returncode:
        raise SystemExit(f"kseg predict failed ({res.returncode}):\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def naive_vs_tiled(root: Path, runs: Path, slide_id: str) -> dict:
    """Seconds of the naive loop and of the tiled path (same ensemble, windows, weights); RLEs must agree."""
    import tifffile
    import torch

    from kseg.config import load_config
    from kseg.infer.ensemble import Ensemble
    from kseg.infer.tiled import Canvas, slide_rles, to_model_input
    from kseg.postprocess import default_params, quantize

    cfg = load_config(
        CONFIG, [f"data.root={root}", f"runs_dir={runs}", f"tile.canvas_dir={root / 'canvas'}", *OVERRIDES]
    )
    ens = Ensemble.from_runs(cfg, (cfg.name,), (0,), tta="none", device="cpu")
    params = default_params(1)
    t = time.perf_counter()
    tiled = next(iter(slide_rles(ens, params, [slide_id], root / "test", progress=False))).rles[0]
    tiled_s = time.perf_counter() - t

    t = time.perf_counter()
    image = tifffile.imread(root / "test" / f"{slide_id}.tiff")  # the whole slide in RAM
    h, w = image.shape[:2]
    grid = Canvas((h, w), 1, cfg.tile)  # only for its grid and window; the canvas itself stays in RAM here
    grid.close()
    acc, span, size = np.zeros((h, w), np.float32), cfg.tile.span, cfg.tile.size
    import cv2

    for y in grid.grid_y.tolist():
        for x in grid.grid_x.tolist():
            win = image[y : y + span, x : x + span].astype(np.float32) / 255.0
            small = cv2.resize(win, (size, size), interpolation=cv2.INTER_AREA)
            x_in = to_model_input(torch.from_numpy(small.transpose(2, 0, 1)[None].copy()), cfg)
            probs = torch.nn.functional.interpolate(
                ens.predict(x_in)[0], size=(span, span), mode="bilinear", align_corners=False
            )
            acc[y : y + span, x : x + span] += probs[0, 0].numpy() * grid.window
    acc /= grid.wy[:, None] * grid.wx[None, :]
    naive = cfg.competition.rle.encode(quantize(np.clip(acc, 0, 1)) > 127)
    naive_s = time.perf_counter() - t
    return {"tiled_seconds": tiled_s, "naive_seconds": naive_s, "same_rle": naive == tiled}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs=2, default=[20000, 30000])
    ap.add_argument("--naive-size", type=int, default=12000)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    base = Path(tempfile.mkdtemp(prefix="kseg-slide-bench-"))
    try:
        run(args, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)  # ~4 GB of slides and canvases


def run(args: argparse.Namespace, base: Path) -> None:
    runs = base / "runs"
    make_checkpoint(runs)
    rss = {}
    for size in args.sizes:
        root = base / f"c{size}"
        make_competition(root, size)
        rss[size] = measure_predict(root, runs, root / "sub.csv")
        (root / "test" / f"s{size}.tiff").unlink()
        print(f"{size}^2: peak RSS {rss[size]['maxrss_kb'] / 1024:8.1f} MiB, {rss[size]['seconds']:.1f}s")
    root = base / "naive"
    slide_id = make_competition(root, args.naive_size)
    speed = naive_vs_tiled(root, runs, slide_id)
    print(f"{args.naive_size}^2: tiled {speed['tiled_seconds']:.1f}s, naive {speed['naive_seconds']:.1f}s")
    small, large = (rss[s]["maxrss_kb"] / 1024 for s in args.sizes)
    common = {"sizes": args.sizes, "rss_mib": [small, large], "seconds": [rss[s]["seconds"] for s in args.sizes]}
    common |= {"overrides": OVERRIDES, "load": os.getloadavg()[0], "naive_size": args.naive_size, **speed}
    write_results(
        "slide_predict",
        [
            {"name": "slide_predict_rss", "ratio": 3072 / small, "goal": 1.0, **common},
            {"name": "slide_predict_rss_flat", "ratio": 1.10 / (large / small), "goal": 1.0, **common},
            {
                "name": "slide_predict_throughput",
                "ratio": speed["naive_seconds"] / speed["tiled_seconds"],
                "goal": 0.8,
                **common,
            },
        ],
    )


if __name__ == "__main__":
    main()
