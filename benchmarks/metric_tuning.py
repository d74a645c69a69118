"""Tuning on the leaderboard's metric: global_dice on a Contrails-sized OOF, the 3D Hausdorff per UW-sized case.

1. ``global_dice_tuning``: synthetic Contrails-shaped OOF (N records x 1 class x 256 x 256, thin contrail lines,
   about half the records empty), grid 10 thresholds x 6 min sizes. Vectorized: ``class_grid_stats`` +
   ``GlobalDice.item_stats`` + ``StatsTable`` (the inner loop of ``kseg tune``, no file IO). Brute force: for
   each cell, ``apply_postprocess`` on every record's full map, then one dice over the summed pixels. The loop's
   cost does not depend much on the cell, so it is timed on ``--loop-cells`` cells and scaled to the grid.
   ratio = loop seconds / vectorized seconds (goal 5: thin lines leave few pixels, so both are bound by the
   connected-components passes, one per threshold here against one per cell there: 6 at best for this grid);
   both must give the same scores.
2. ``hausdorff_per_case``: synthetic UW-shaped cases (``--slices`` x 266 x 266, 3 organs as ellipsoids, the
   prediction a shifted, eroded copy with a few false-positive specks). Per case and class
   ``kseg.metrics.hausdorff_distance`` (nearest-surface queries on a cKDTree) against the naive exact
   reference: ``scipy.spatial.distance.directed_hausdorff`` both ways on every foreground voxel (the mle-bench
   grader's way). ratio = naive / kseg seconds (goal 1); distances must agree.
3. ``dice_hausdorff_tuning_per_case``: the slow tuning path (``kseg.tune.volume.case_cell_stats``) on the same
   cases with a 5 thresholds x 3 min sizes grid; seconds per case (ratio = 1 case-minute / measured minutes,
   goal 1: a case tunes in under a minute), extrapolated to the UW train set (274 case-days).

    .venv/bin/python benchmarks/metric_tuning.py [--records 1800] [--loop-cells 6] [--cases 3] [--slices 80]
"""

from __future__ import annotations

import argparse
import math
import os
import time

import cv2
import numpy as np
from scipy.spatial.distance import directed_hausdorff

from kseg.metrics import build_metric, hausdorff_distance
from kseg.postprocess import ClassParams, apply_postprocess, params_to_dict, quantize
from kseg.tune.grid import Grid
from kseg.tune.search import StatsTable
from kseg.tune.stats import class_grid_stats
from kseg.tune.volume import case_cell_stats

from _common import write_results

SIZE = 256
THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65)
MIN_SIZES = (0, 10, 25, 50, 100, 200)
UW_CASES = 274  # case-days in the UW-Madison train set
UW_SIZE = 266


def contrails_oof(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 OOF [n, 256, 256], bool truth [n, 256, 256]): 0-4 thin lines per record, ~half empty."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((n, SIZE, SIZE), dtype=np.uint8)
    oof = np.empty((n, SIZE, SIZE), dtype=np.uint8)
    for i in range(n):
        for _ in range(int(rng.integers(1, 5)) if rng.random() < 0.5 else 0):
            p0, p1 = rng.integers(0, SIZE, 2), rng.integers(0, SIZE, 2)
            cv2.line(truth[i], tuple(int(v) for v in p0), tuple(int(v) for v in p1), 1, int(rng.integers(1, 4)))
        blur = cv2.GaussianBlur(truth[i].astype(np.float32), (0, 0), 1.5) * rng.uniform(0.6, 1.0)
        speck = cv2.GaussianBlur(rng.random((SIZE, SIZE), dtype=np.float32), (0, 0), 1.5) - 0.5
        oof[i] = quantize(np.clip(blur * 1.6 + speck * 0.9, 0, 1))
    return oof, truth.astype(bool)


def vectorized(oof: np.ndarray, truth: np.ndarray, grid: Grid, chunk: int = 64) -> np.ndarray:
    """global_dice of every cell [cells] with the kseg tune core."""
    metric = build_metric("global_dice")
    table = StatsTable(1, 1, grid.size, 3, metric.finalize)
    for s in range(0, len(oof), chunk):
        q, t = oof[s : s + chunk], truth[s : s + chunk]
        fold = np.zeros(len(q), dtype=np.int64)
        table.add_images(fold)
        st = class_grid_stats(q, t, grid)
        stats = metric.item_stats(st.inter, st.pred_area, st.true_area).reshape(grid.size, len(q), 3)
        table.add(0, fold, stats, metric.item_stats(st.default_inter, st.default_pred_area, st.true_area))
    return table.cell_means(0)


def brute_force(oof: np.ndarray, truth: np.ndarray, cells: list[ClassParams]) -> np.ndarray:
    """global_dice per cell: post-process every full map, sum intersections and areas, divide once."""
    out = []
    for p in cells:
        inter = total = 0
        for q, t in zip(oof, truth, strict=True):
            m = apply_postprocess(q[None], [p])[0] != 0
            inter += int(np.count_nonzero(m & t))
            total += int(np.count_nonzero(m)) + int(np.count_nonzero(t))
        out.append(1.0 if total == 0 else 2.0 * inter / total)
    return np.array(out)


def bench_global(records: int, loop_cells: int) -> dict:
    oof, truth = contrails_oof(records)
    grid = Grid(thresholds=THRESHOLDS, min_sizes=MIN_SIZES)
    vectorized(oof[:8], truth[:8], grid)  # warm-up
    t0 = time.perf_counter()
    vec = vectorized(oof, truth, grid)
    t_vec = time.perf_counter() - t0
    pick = np.linspace(0, grid.size - 1, loop_cells).round().astype(int)
    t0 = time.perf_counter()
    ref = brute_force(oof, truth, [grid.params(int(i)) for i in pick])
    t_timed = time.perf_counter() - t0
    t_loop = t_timed * grid.size / loop_cells
    diff = float(np.abs(vec[pick] - ref).max())
    print(
        f"global_dice: {records} records, {grid.size} cells: vectorized {t_vec:.1f} s, loop ~{t_loop:.0f} s "
        f"({t_timed:.1f} s timed on {loop_cells} cells), max |score diff| {diff:.1e}"
    )
    return {
        "name": "global_dice_tuning",
        "ratio": round(t_loop / t_vec, 2),
        "goal": 5.0,
        "records": records,
        "shape": [1, SIZE, SIZE],
        "cells": grid.size,
        "vectorized_s": round(t_vec, 2),
        "loop_s": round(t_loop, 1),
        "loop_timed_s": round(t_timed, 2),
        "loop_cells_timed": loop_cells,
        "max_score_diff": diff,
        "best_cell": params_to_dict(grid.params(int(np.argmax(vec)))),
    }


def uw_case(slices: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 probabilities [Z, 3, 266, 266], bool truth [Z, 3, 266, 266]) of one synthetic UW-like case."""
    z, y, x = np.ogrid[:slices, :UW_SIZE, :UW_SIZE]
    truth = np.zeros((slices, 3, UW_SIZE, UW_SIZE), dtype=bool)
    prob = np.zeros(truth.shape, dtype=np.float32)
    for c in range(3):
        cz, cy, cx = rng.uniform(0.3, 0.7) * slices, rng.uniform(80, 186), rng.uniform(80, 186)
        rz, ry, rx = rng.uniform(0.15, 0.3) * slices, rng.uniform(20, 45), rng.uniform(20, 45)
        d = ((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2
        truth[:, c] = d <= 1
        shifted = ((z - cz - 1.5) / rz) ** 2 + ((y - cy - 3) / ry) ** 2 + ((x - cx + 2) / rx) ** 2
        prob[:, c] = np.clip(1.2 - shifted, 0, 1)
    specks = rng.random(prob.shape) < 2e-6
    prob[specks] = 0.9
    return quantize(prob), truth


def naive_hausdorff(pred: np.ndarray, true: np.ndarray) -> float:
    """scipy directed_hausdorff both ways on every foreground voxel, unit-cube coordinates, / sqrt 3."""
    a, b = np.argwhere(pred) / np.array(pred.shape), np.argwhere(true) / np.array(true.shape)
    return max(directed_hausdorff(a, b)[0], directed_hausdorff(b, a)[0]) / math.sqrt(3)


def bench_hausdorff(cases: int, slices: int) -> list[dict]:
    rng = np.random.default_rng(1)
    data = [uw_case(slices, rng) for _ in range(cases)]
    t_kseg = t_naive = 0.0
    diff = 0.0
    for q, truth in data:
        pred = q > 127
        for c in range(3):
            t0 = time.perf_counter()
            ours = hausdorff_distance(pred[:, c], truth[:, c])
            t1 = time.perf_counter()
            ref = naive_hausdorff(pred[:, c], truth[:, c])
            t_naive += time.perf_counter() - t1
            t_kseg += t1 - t0
            diff = max(diff, abs(ours - ref))
    per_kseg, per_naive = t_kseg / cases, t_naive / cases
    metric = build_metric("dice_hausdorff")
    grid = Grid(thresholds=(0.3, 0.4, 0.5, 0.6, 0.7), min_sizes=(0, 50, 200))
    t0 = time.perf_counter()
    for q, truth in data:
        for c in range(3):
            case_cell_stats(q[:, c], truth[:, c], grid, None, metric)
    per_case_tune = (time.perf_counter() - t0) / cases
    print(
        f"hausdorff: {cases} cases x {slices} x {UW_SIZE}^2 x 3 classes: kseg {per_kseg:.2f} s/case, naive "
        f"{per_naive:.2f} s/case, max |diff| {diff:.1e}; tuning {grid.size} cells: {per_case_tune:.1f} s/case, "
        f"UW train set ({UW_CASES} cases) ~{per_case_tune * UW_CASES / 60:.0f} min"
    )
    shape = [slices, 3, UW_SIZE, UW_SIZE]
    return [
        {
            "name": "hausdorff_per_case",
            "ratio": round(per_naive / per_kseg, 2),
            "goal": 1.0,
            "cases": cases,
            "case_shape": shape,
            "kseg_s_per_case": round(per_kseg, 3),
            "naive_s_per_case": round(per_naive, 3),
            "max_distance_diff": diff,
        },
        {
            "name": "dice_hausdorff_tuning_per_case",
            "ratio": round(60.0 / per_case_tune, 2),
            "goal": 1.0,
            "cases": cases,
            "case_shape": shape,
            "cells": grid.size,
            "s_per_case": round(per_case_tune, 2),
            "uw_train_cases": UW_CASES,
            "uw_train_min_extrapolated": round(per_case_tune * UW_CASES / 60, 1),
        },
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=1800)
    ap.add_argument("--loop-cells", type=int, default=6, help="cells timed in the brute-force loop (60 = all)")
    ap.add_argument("--cases", type=int, default=3)
    ap.add_argument("--slices", type=int, default=80)
    args = ap.parse_args()
    load_before = round(os.getloadavg()[0], 2)
    records = [bench_global(args.records, args.loop_cells), *bench_hausdorff(args.cases, args.slices)]
    load = {"load_1min_before": load_before, "load_1min_after": round(os.getloadavg()[0], 2)}
    print(f"1-minute load average: {load['load_1min_before']} before, {load['load_1min_after']} after")
    write_results("metric_tuning", [{**r, **load} for r in records])


if __name__ == "__main__":
    main()
