"""Carvana-scale test-set prediction: kseg's pipeline against a naive single-process loop, and its post-model rate.

A few hundred synthetic full-size Carvana test images (the Carvana miniature: 1918x1280 JPEGs, row-order RLE
at full size) and a tiny U-Net (timm mobilenetv3_small_050 encoder, so the model is not the bottleneck) at the
starter's 128x128. Both paths read, resize, run the model, restore to 1918x1280, threshold, RLE-encode and
write the csv:

- ``kseg``: ``predict_submission`` (reader workers, the model one batch ahead in a thread while restore +
  encode + write run in the caller, memory bounded by two batches);
- ``naive``: the kernel loop, one image at a time in one process (cv2 read + resize, model, cv2 resize back,
  > 0.5, encode, rows collected and written at the end).

Records: ``carvana_predict_vs_naive`` (ratio = kseg / naive images/s, goal 2) and ``carvana_post_model``
(restore + quantize + threshold + encode + csv write of model-size outputs, images/s / 50, goal 1).

    .venv/bin/python benchmarks/predict_speed.py [--cars 13] [--workers 2]
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from kseg.config import load_config
from kseg.data.pixels import model_input
from kseg.demo.registry import write_miniature
from kseg.infer.pipeline import predict_submission
from kseg.infer.stream import restore_batch
from kseg.models import build_model, predict_proba, save_checkpoint
from kseg.postprocess import apply_postprocess, default_params, quantize

from _common import REPO, write_results

TINY = ["model.encoder=tu-mobilenetv3_small_050", "model.kwargs={decoder_channels: [16, 8, 8, 4, 4]}"]  # ~3 ms/img
TINY += ["model.encoder_weights=none", "model.aux_head=false", "data.image_size=[128, 128]", "predict.tta=none"]


def naive_loop(cfg, model, ids: list[str], folder: Path, out: Path) -> None:
    """The kernel way: per image read, resize, predict, resize back, threshold, encode; csv at the end."""
    spec = cfg.competition
    h, w = cfg.data.image_size
    rows = []
    with torch.inference_mode():
        for image_id in ids:
            rgb = cv2.cvtColor(cv2.imread(str(folder / spec.image_file(image_id))), cv2.COLOR_BGR2RGB)
            small = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
            x = model_input(torch.from_numpy(np.ascontiguousarray(small.transpose(2, 0, 1)))[None], "imagenet")
            probs, _ = predict_proba(model, x, spec.mode)
            full = cv2.resize(probs[0, 0].numpy(), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
            rows.append((image_id, spec.rle.encode(full > 0.5)))
    with out.open("w", newline="") as f:
        csv.writer(f).writerows([("img", "rle_mask"), *rows])


def post_model_rate(cfg, images: int, batch: int) -> float:
    """Images/s of kseg's stages after the model: restore to 1918x1280, quantize, threshold, encode, write."""
    rng = np.random.default_rng(0)
    h, w = cfg.data.image_size
    small = cv2.GaussianBlur(rng.random((batch, h, w)).astype(np.float32), (0, 0), 4)
    probs = torch.from_numpy((small - small.min()) / (small.max() - small.min()))[:, None]
    sizes = torch.tensor([[1280, 1918]] * batch)
    params = default_params(cfg.competition.num_classes)
    with tempfile.TemporaryFile("w") as f:
        start = time.perf_counter()
        for _ in range(images // batch):
            for p in restore_batch(probs, sizes, cfg):
                masks = apply_postprocess(quantize(p.clamp_(0, 1)), params)
                f.write(",".join(cfg.competition.rle.encode_batch(masks)) + "\n")
        seconds = time.perf_counter() - start
    return (images // batch) * batch / seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cars", type=int, default=13, help="test cars (16 images each)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_miniature("carvana", Path(tmp) / "carvana", n_train=1, n_test=args.cars)
        overrides = [f"data.root={root}", f"runs_dir={Path(tmp) / 'runs'}", f"data.num_workers={args.workers}"]
        cfg = load_config(REPO / "configs/carvana/unet128.yaml", [*overrides, *TINY, "predict.batch_size=8"])
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        save_checkpoint(cfg.fold_dir(0) / "best.pt", model, cfg, epoch=0)
        folder = root / cfg.competition.test_images
        ids = sorted(cfg.competition.image_id(p.name) for p in folder.glob(f"*{cfg.competition.image_ext}"))
        load = [os.getloadavg()[0]]
        start = time.perf_counter()
        naive_loop(cfg, model, ids, folder, Path(tmp) / "naive.csv")
        naive = len(ids) / (time.perf_counter() - start)
        load.append(os.getloadavg()[0])
        result = predict_submission(cfg, out=Path(tmp) / "kseg.csv", progress=False)
        kseg = result.images / result.seconds
        load.append(os.getloadavg()[0])
        post = post_model_rate(cfg, 48, 8)
        load.append(os.getloadavg()[0])
    print(f"{len(ids)} images: naive {naive:.2f} img/s, kseg {kseg:.2f} img/s, post-model {post:.1f} img/s")
    common = {"images": len(ids), "size": [1280, 1918], "model_size": [128, 128], "load_1min": load}
    write_results(
        "predict_speed",
        [
            {
                "name": "carvana_predict_vs_naive",
                "ratio": kseg / naive,
                "goal": 2.0,
                "kseg_images_per_s": kseg,
                "naive_images_per_s": naive,
                "workers": args.workers,
                **common,
            },
            {"name": "carvana_post_model", "ratio": post / 50.0, "goal": 1.0, "images_per_s": post, **common},
        ],
    )


if __name__ == "__main__":
    main()
