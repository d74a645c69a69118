"""Carvana-scale test-set prediction: kseg's pipeline against a naive single-process loop, and its post-model rate.

640 synthetic full-size Carvana test images (the Carvana miniature: 1918x1280 JPEGs, row-order RLE
at full size) and a tiny U-Net (timm mobilenetv3_small_050 encoder, so the model is not the bottleneck) at the
starter's 128x128. Both paths read, resize, run the model, restore to 1918x1280, threshold, RLE-encode and
write the csv:

- ``kseg``: ``predict_submission`` (reader workers, the model one batch ahead in a thread while restore +
  encode + write run in the caller, memory bounded by two batches; one group restores in uint8);
- ``kseg_draft``: the same with ``data.jpeg_draft`` (JPEGs decoded at 1/4 size by libjpeg before the resize);
- ``naive``: the kernel loop, one image at a time in one process (cv2 read + cvtColor + resize, model, cv2
  resize back, > 0.5, encode, rows collected and written at the end).

The three run in turn ``--repeats`` times and the medians are compared (the machine's load drifts). Records:
``carvana_predict_vs_naive`` and ``carvana_predict_jpeg_draft_vs_naive`` (ratio = kseg / naive images/s,
goal 2), ``carvana_post_model`` (uint8 restore + threshold + encode + csv write of model-size outputs,
images/s / 50, goal 1). Every run's rate and the 1-minute load after each round are recorded.

    .venv/bin/python benchmarks/predict_speed.py [--cars 40] [--workers 2] [--repeats 5]
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
from kseg.postprocess import apply_postprocess, default_params

from _common import REPO, write_results

TINY = ["model.encoder=tu-mobilenetv3_small_050", "model.kwargs={decoder_channels: [16, 8, 8, 4, 4]}"]  # ~3 ms/img
TINY += ["model.encoder_weights=none", "model.aux_head=false", "data.image_size=[128, 128]", "predict.tta=none"]
DRAFT = ["data.jpeg_draft=true"]  # the reduced JPEG decode, measured as a third path


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
    """Images/s of kseg's stages after the model as ``predict_images`` runs them for one group: restore to
    1918x1280 in uint8 (``restore_quantized``), threshold, encode, write."""
    rng = np.random.default_rng(0)
    h, w = cfg.data.image_size
    small = cv2.GaussianBlur(rng.random((batch, h, w)).astype(np.float32), (0, 0), 4)
    probs = torch.from_numpy((small - small.min()) / (small.max() - small.min()))[:, None]
    sizes = torch.tensor([[1280, 1918]] * batch)
    params = default_params(cfg.competition.num_classes)
    with tempfile.TemporaryFile("w") as f:
        start = time.perf_counter()
        for _ in range(images // batch):
            for q in restore_batch(probs, sizes, cfg, quantized=True):
                masks = apply_postprocess(q, params)
                f.write(",".join(cfg.competition.rle.encode_batch(masks)) + "\n")
        seconds = time.perf_counter() - start
    return (images // batch) * batch / seconds


def kseg_rate(cfg, out: Path) -> float:
    result = predict_submission(cfg, out=out, progress=False)
    return result.images / result.seconds


def measure(root: Path, tmp: Path, workers: int, repeats: int) -> tuple[dict[str, list[float]], object, int]:
    """Images/s of the naive loop, kseg and kseg with ``data.jpeg_draft``, run in turn ``repeats`` times."""
    overrides = [f"data.root={root}", f"runs_dir={tmp / 'runs'}", f"data.num_workers={workers}"]
    cfg = load_config(REPO / "configs/carvana/unet128.yaml", [*overrides, *TINY, "predict.batch_size=8"])
    draft = load_config(REPO / "configs/carvana/unet128.yaml", [*overrides, *TINY, "predict.batch_size=8"] + DRAFT)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    save_checkpoint(cfg.fold_dir(0) / "best.pt", model, cfg, epoch=0)
    folder = root / cfg.competition.test_images
    ids = sorted(cfg.competition.image_id(p.name) for p in folder.glob(f"*{cfg.competition.image_ext}"))
    rates: dict[str, list[float]] = {"naive": [], "kseg": [], "kseg_draft": [], "load_1min": []}
    for _ in range(repeats):  # in turn, so a change of machine load touches every path alike
        start = time.perf_counter()
        naive_loop(cfg, model, ids, folder, tmp / "naive.csv")
        rates["naive"].append(len(ids) / (time.perf_counter() - start))
        rates["kseg"].append(kseg_rate(cfg, tmp / "kseg.csv"))
        rates["kseg_draft"].append(kseg_rate(draft, tmp / "draft.csv"))
        rates["load_1min"].append(os.getloadavg()[0])
    return rates, cfg, len(ids)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cars", type=int, default=40, help="test cars (16 images each)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5, help="rounds of (naive, kseg, kseg draft); medians reported")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_miniature("carvana", Path(tmp) / "carvana", n_train=1, n_test=args.cars)
        rates, cfg, images = measure(root, Path(tmp), args.workers, args.repeats)
        post = post_model_rate(cfg, 48, 8)
    med = {k: float(np.median(v)) for k, v in rates.items() if k != "load_1min"}
    print(
        f"{images} images, medians of {args.repeats}: naive {med['naive']:.1f} img/s, kseg {med['kseg']:.1f}, "
        f"kseg + jpeg_draft {med['kseg_draft']:.1f}, post-model {post:.1f} img/s"
    )
    common = {"images": images, "size": [1280, 1918], "model_size": [128, 128], "workers": args.workers}
    common |= {"repeats": args.repeats, "runs_images_per_s": rates}
    write_results(
        "predict_speed",
        [
            {
                "name": "carvana_predict_vs_naive",
                "ratio": med["kseg"] / med["naive"],
                "goal": 2.0,
                "kseg_images_per_s": med["kseg"],
                "naive_images_per_s": med["naive"],
                **common,
            },
            {
                "name": "carvana_predict_jpeg_draft_vs_naive",
                "ratio": med["kseg_draft"] / med["naive"],
                "goal": 2.0,
                "kseg_images_per_s": med["kseg_draft"],
                "naive_images_per_s": med["naive"],
                "config": DRAFT,
                **common,
            },
            {"name": "carvana_post_model", "ratio": post / 50.0, "goal": 1.0, "images_per_s": post, **common},
        ],
    )


if __name__ == "__main__":
    main()
