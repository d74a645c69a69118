"""Vectorized post-processing grid search (kseg.tune) vs the per-cell loop of the public Kaggle kernels.

Synthetic Severstal-shaped OOF: N images x 4 classes x 256 x 1600, about half the (image, class) pairs
empty, predictions = blurred truth + low-frequency false-positive blobs + blurred speckle (tens of
components per map at threshold 0.2, a few at 0.65).
Grid: 10 thresholds x 11 min sizes, dice.

* vectorized: ``kseg.tune.stats.class_grid_stats`` + ``kseg.metrics`` dice + ``ScoreTable`` (the inner
  loop of ``kseg tune``, without file IO), for all 110 cells;
* loop: for every cell, every (image, class): threshold, ``cv2.connectedComponents``, then per component
  ``(labels == i).sum()`` and paint the kept ones (Severstal kernel ``post_process``), then dice.
  The loop's cost does not depend on min_size (every component is visited), so by default it is timed on
  ``--loop-sizes`` min sizes per threshold and scaled to 11; ``--loop-sizes 11`` times all 110 cells.

ratio = loop seconds / vectorized seconds (goal >= 100). Also prints the extrapolated time of both for the
full Severstal OOF (12,568 images).

    .venv/bin/python benchmarks/tune_grid.py [--images 32] [--loop-sizes 2]
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
from postprocess_speed import kernel_remove_small

from kseg.metrics import dice_from_stats
from kseg.postprocess import quantize
from kseg.tune.grid import Grid
from kseg.tune.search import ScoreTable
from kseg.tune.stats import class_grid_stats

from _common import write_results

H, W, C = 256, 1600, 4
SEVERSTAL_OOF = 12568
THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65)
MIN_SIZES = (0, 100, 200, 400, 600, 800, 1000, 1500, 2000, 3000, 4000)


def make_oof(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 OOF [n, C, H, W], bool truth [n, C, H, W]) Severstal-like: ~half of the masks empty."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((n, C, H, W), dtype=np.uint8)
    for i in range(n):
        for c in range(C):
            if rng.random() < 0.5:
                continue
            for _ in range(int(rng.integers(1, 4))):
                x, y = int(rng.integers(0, W)), int(rng.integers(0, H))
                axes = (int(rng.integers(10, 200)), int(rng.integers(5, 60)))
                cv2.ellipse(truth[i, c], (x, y), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    oof = np.empty((n, C, H, W), dtype=np.uint8)
    for i in range(n):
        for c in range(C):
            smooth = cv2.GaussianBlur(truth[i, c].astype(np.float32), (0, 0), 6) * rng.uniform(0.5, 1.0)
            low = cv2.resize(rng.random((H // 32, W // 32), dtype=np.float32), (W, H), interpolation=cv2.INTER_CUBIC)
            speck = cv2.GaussianBlur(rng.random((H, W), dtype=np.float32), (0, 0), 2) - 0.5
            p = smooth + np.clip(low - 0.75, 0, None) * 1.5 + speck * 0.8  # tens of components at thr 0.2
            oof[i, c] = quantize(np.clip(p, 0, 1))
    return oof, truth.astype(bool)


def vectorized(oof: np.ndarray, truth: np.ndarray, grid: Grid, chunk: int = 16) -> np.ndarray:
    """Mean dice per (class, cell) [C, cells] with the kseg tune core."""
    n = oof.shape[0]
    table = ScoreTable(C, 1, grid.size)
    for s in range(0, n, chunk):
        q, t = oof[s : s + chunk], truth[s : s + chunk]
        fold = np.zeros(q.shape[0], dtype=np.int64)
        table.add_images(fold)
        for c in range(C):
            st = class_grid_stats(q[:, c], t[:, c], grid)
            scores = dice_from_stats(st.inter, st.pred_area, st.true_area).reshape(grid.size, -1)
            table.add(c, fold, scores, dice_from_stats(st.default_inter, st.default_pred_area, st.true_area))
    return np.stack([table.cell_means(c) for c in range(C)])


def kernel_post_process(probability: np.ndarray, threshold: float, min_size: int) -> np.ndarray:
    """The Severstal public kernel's post_process: cv2 threshold, then the per-component loop."""
    mask = cv2.threshold(probability, threshold, 1, cv2.THRESH_BINARY)[1]
    return kernel_remove_small(mask, min_size)


def kernel_dice(pred: np.ndarray, true: np.ndarray) -> float:
    s = pred.sum() + true.sum()
    return 1.0 if s == 0 else 2.0 * float((pred * true).sum()) / float(s)


def loop(oof: np.ndarray, truth: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    """Mean dice per (class, threshold, size) [C, T, len(sizes)], one post_process call per cell."""
    probs = oof.astype(np.float32) / 255.0
    truth_f = truth.astype(np.float32)
    out = np.zeros((C, len(THRESHOLDS), len(sizes)))
    for ti, t in enumerate(THRESHOLDS):
        for si, s in enumerate(sizes):
            for c in range(C):
                out[c, ti, si] = np.mean(
                    [kernel_dice(kernel_post_process(probs[i, c], t, s), truth_f[i, c]) for i in range(len(oof))]
                )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--loop-sizes", type=int, default=2, help="min sizes per threshold timed in the loop (11 = all)")
    args = ap.parse_args()
    oof, truth = make_oof(args.images)
    grid = Grid(thresholds=THRESHOLDS, min_sizes=MIN_SIZES)
    vectorized(oof[:2], truth[:2], grid)  # warm-up (imports, caches)

    t0 = time.perf_counter()
    vec = vectorized(oof, truth, grid)
    t_vec = time.perf_counter() - t0

    sizes = tuple(MIN_SIZES[i] for i in np.linspace(0, len(MIN_SIZES) - 1, args.loop_sizes).round().astype(int))
    t0 = time.perf_counter()
    ref = loop(oof, truth, sizes)
    t_loop_timed = time.perf_counter() - t0
    t_loop = t_loop_timed * len(MIN_SIZES) / len(sizes)

    # same numbers from both: the kernel thresholds floats (p > t), kseg compares q > floor(t*255), which
    # agree on quantized probabilities for these thresholds; scores must match cell by cell
    cols = [MIN_SIZES.index(s) for s in sizes]
    vec_cells = vec.reshape(C, len(THRESHOLDS), len(MIN_SIZES))[:, :, cols]
    max_diff = float(np.abs(vec_cells - ref).max())
    per_image = t_vec / args.images
    records = [
        {
            "name": "tune_grid_vectorized_vs_loop",
            "ratio": round(t_loop / t_vec, 2),
            "goal": 100.0,
            "images": args.images,
            "shape": [C, H, W],
            "cells": len(THRESHOLDS) * len(MIN_SIZES),
            "vectorized_s": round(t_vec, 3),
            "loop_s": round(t_loop, 2),
            "loop_timed_s": round(t_loop_timed, 2),
            "loop_cells_timed": len(THRESHOLDS) * len(sizes),
            "max_score_diff": max_diff,
            "severstal_oof_images": SEVERSTAL_OOF,
            "severstal_vectorized_s_extrapolated": round(per_image * SEVERSTAL_OOF, 1),
            "severstal_loop_s_extrapolated": round(t_loop / args.images * SEVERSTAL_OOF, 1),
        }
    ]
    print(
        f"{args.images} images, {len(THRESHOLDS) * len(MIN_SIZES)} cells: vectorized {t_vec:.2f} s, "
        f"loop {t_loop:.1f} s ({t_loop_timed:.1f} s timed on {len(THRESHOLDS) * len(sizes)} cells), "
        f"max |score diff| {max_diff:.2e}"
    )
    print(
        f"full Severstal OOF ({SEVERSTAL_OOF} images): vectorized ~{per_image * SEVERSTAL_OOF / 60:.1f} min, "
        f"loop ~{t_loop / args.images * SEVERSTAL_OOF / 3600:.1f} h"
    )
    write_results("tune_grid", records)


if __name__ == "__main__":
    main()
