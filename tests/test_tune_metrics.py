"""kseg tune on the registry's pooled, weighted and volume metrics vs a brute-force recomputation on random OOF.

The reference thresholds the full OOF masks of every cell with ``apply_postprocess_batch`` and scores them with
the metric's own definition written here (global sums, per-case volumes), one cell at a time."""

from __future__ import annotations

import itertools
import logging
import math

import cv2
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import directed_hausdorff
from test_data_tiles import REPO
from test_tune import AXES, GRID, C, H, W, _random_case, _write_oof

from kseg.config import config_from_dict, load_config
from kseg.data.rle import encode
from kseg.data.slides import slide_size
from kseg.data.tiles import expand_tile_ids
from kseg.demo.registry import write_miniature
from kseg.metrics import per_item_scores
from kseg.postprocess import ClassParams, apply_postprocess_batch, quantize
from kseg.tune.blend import select_ensemble
from kseg.tune.report import grid_frame, postprocess_dict
from kseg.tune.run import tune

from rle_reference import PUBLISHED, ref_decode

CLASSES = ["a", "b"]
UW = r"^(?P<case>case\d+_day\d+)_slice_(?P<slice>\d+)$"
SMALL_GRID = {"thresholds": [0.3, 0.5, 0.7], "min_sizes": [0, 3, 10], "min_areas": [0, 15]}


def _ids(n: int) -> list[str]:
    """3 cases; slice numbers 1, 8, 15, 22, ... (string order differs from the numeric one)."""
    return [f"case{i % 3}_day0_slice_{i // 3 * 7 + 1}" for i in range(n)]


def _config(root, truth: np.ndarray, metric: str, params: dict, grid: dict, volume: bool = False):
    ids = _ids(truth.shape[0])
    rows = [
        {"ImageId_ClassId": f"{ids[i]}_{c + 1}", "EncodedPixels": encode(truth[i, c])}
        for i, c in itertools.product(range(len(ids)), range(C))
    ]
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "train.csv", index=False)
    spec = {
        "name": "tiny",
        "classes": CLASSES,
        "mode": "multilabel",
        "metric": metric,
        "metric_params": params,
        "image_size": [H, W],
        "submission_size": [H, W],
        "train": {"format": "combined", "id_column": "ImageId_ClassId"},
        "submission": {"format": "combined", "id_column": "ImageId_ClassId"},
    }
    if volume:
        spec["volume"] = {"pattern": UW, "context": 0}
    raw = {"competition": spec, "name": "exp", "runs_dir": str(root / "runs"), "data": {"root": str(root)}}
    return config_from_dict({**raw, "tune": dict(grid, chunk_size=4)}), ids


def _cells(grid: dict) -> list[ClassParams]:
    """Every cell of a ``tune`` grid dict in the grid's C order (axes absent from the dict at their default)."""
    tops = [None] + (grid["top_thresholds"] if grid.get("triplet") else [])
    names = ("thresholds", "min_sizes", "min_areas", "max_prob_gates", "aux_gates")
    values = [grid.get(k, [d]) for k, d in zip(names, (0.5, 0, 0, 0.0, 0.0), strict=True)] + [tops]
    return [ClassParams(**dict(zip(AXES, combo, strict=True))) for combo in itertools.product(*values)]


def _global_dice(pred: np.ndarray, true: np.ndarray) -> float:
    total = pred.sum() + true.sum()
    return 1.0 if total == 0 else 2.0 * (pred & true).sum() / total


def _fbeta_pooled(pred: np.ndarray, true: np.ndarray, beta: float) -> float:
    tp, fp, fn = (pred & true).sum(), (pred & ~true).sum(), (~pred & true).sum()
    den = (1 + beta**2) * tp + beta**2 * fn + fp
    return 1.0 if den == 0 else (1 + beta**2) * tp / den


def _best(scores: np.ndarray, cells: list[ClassParams]) -> int:
    """Tied cells (within 1e-9): the default ClassParams() if tied, else the strictest (as test_tune)."""
    tied = np.flatnonzero(scores >= scores.max() - 1e-9)
    for i in tied:
        if cells[i] == ClassParams():
            return int(i)
    return int(max(tied, key=lambda i: _strict(cells[i])))


def _strict(p: ClassParams) -> tuple:
    top = -1.0 if p.top_threshold is None else p.top_threshold
    return (p.threshold, p.min_size, p.min_area, p.max_prob_gate, p.aux_gate, top)


def _check_against(result, cells, preds, truth, folds, score) -> None:
    """Every cell's score, the choice and the CV score per class from ``score(pred [m, H, W], true)``."""
    table = grid_frame(result)
    for c, name in enumerate(CLASSES):
        full = np.array([score(preds[j][:, c], truth[:, c]) for j in range(len(cells))])
        np.testing.assert_allclose(table[table["class"] == name]["score"].to_numpy(), full, atol=1e-6)
        best = _best(full, cells)
        assert result.params[c] == cells[best]
        assert result.choices[c].score_tuned == pytest.approx(full[best], abs=1e-12)
        # CV: choose on the other folds, then score the whole OOF, each fold predicted with its own choice
        pred_cv = np.zeros_like(truth[:, c])
        for k in np.unique(folds):
            rest = folds != k
            chosen = _best(np.array([score(preds[j][rest, c], truth[rest, c]) for j in range(len(cells))]), cells)
            pred_cv[folds == k] = preds[chosen][folds == k, c]
        assert result.choices[c].score_cv == pytest.approx(score(pred_cv, truth[:, c]), abs=1e-12)


@pytest.mark.parametrize(
    ("metric", "params", "score"),
    [
        ("global_dice", {}, _global_dice),
        ("fbeta", {"beta": 0.5, "pooled": True}, lambda p, t: _fbeta_pooled(p, t, 0.5)),
        ("fbeta", {"beta": 2.0, "pooled": True}, lambda p, t: _fbeta_pooled(p, t, 2.0)),
    ],
)
def test_pooled_metrics_match_brute_force(tmp_path, metric: str, params: dict, score) -> None:
    truth, probs, aux = _random_case(np.random.default_rng(7), 14)
    cfg, ids = _config(tmp_path, truth, metric, params, GRID)
    folds = np.random.default_rng(0).permutation(np.arange(14) % 3)
    _write_oof(cfg, "exp", ids, folds, probs, aux, seed=1)
    result = tune(cfg, progress=False)
    cells = _cells(GRID)
    preds = [apply_postprocess_batch(probs, [p] * C, aux / 255.0) for p in cells]
    truth = truth.astype(bool)
    _check_against(result, cells, preds, truth, folds, score)
    # the probe is not degenerate: the pooled choice differs from the per-image dice choice somewhere
    assert result.score_tuned > result.score_default


def test_class_weights_weigh_the_tuned_scores(tmp_path) -> None:
    truth, probs, aux = _random_case(np.random.default_rng(3), 10)
    plain, ids = _config(tmp_path / "plain", truth, "dice", {}, SMALL_GRID)
    weighted, _ = _config(tmp_path / "weighted", truth, "dice", {"class_weights": [3, 1]}, SMALL_GRID)
    folds = np.arange(10) % 2
    for cfg in (plain, weighted):
        _write_oof(cfg, "exp", ids, folds, probs, None, seed=1)
    a, b = tune(plain, progress=False), tune(weighted, progress=False)
    assert a.params == b.params  # each class is chosen on its own
    per_class = [ch.score_tuned for ch in a.choices]
    assert a.score_tuned == pytest.approx(np.mean(per_class))
    assert b.score_tuned == pytest.approx((3 * per_class[0] + per_class[1]) / 4)
    assert postprocess_dict(b, "exp")["metric_params"] == {"class_weights": [3, 1]}


def _hausdorff(pred: np.ndarray, true: np.ndarray) -> float:
    """The mle-bench grader's definition: unit-cube coordinates, scipy directed_hausdorff both ways, / sqrt 3."""
    if not pred.any() and not true.any():
        return math.nan
    if not pred.any() or not true.any():
        return 1.0
    a, b = np.argwhere(pred) / np.array(pred.shape), np.argwhere(true) / np.array(true.shape)
    return max(directed_hausdorff(a, b)[0], directed_hausdorff(b, a)[0]) / math.sqrt(3)


def _dice_hausdorff(pred: np.ndarray, true: np.ndarray, cases: list[np.ndarray]) -> float:
    """0.4 x mean slice dice + 0.6 x mean case (1 - Hausdorff), both-empty slices and cases skipped."""
    dice = [2 * (p & t).sum() / (p.sum() + t.sum()) for p, t in zip(pred, true, strict=True) if p.any() or t.any()]
    hd = [1 - _hausdorff(pred[idx], true[idx]) for idx in cases if pred[idx].any() or true[idx].any()]
    return 0.4 * (np.mean(dice) if dice else 1.0) + 0.6 * (np.mean(hd) if hd else 1.0)


def test_dice_hausdorff_matches_brute_force_per_case(tmp_path, caplog) -> None:
    truth, probs, aux = _random_case(np.random.default_rng(5), 15)
    cfg, ids = _config(tmp_path, truth, "dice_hausdorff", {}, SMALL_GRID, volume=True)
    case_of = np.arange(15) % 3
    folds = case_of.copy()  # one case per fold
    _write_oof(cfg, "exp", ids, folds, probs, None, seed=1)
    with caplog.at_level(logging.INFO, logger="kseg.tune.volume"):
        result = tune(cfg, progress=False)
    assert "slow path" in caplog.text and "case by case on 3 cases" in caplog.text
    cells = _cells(SMALL_GRID)
    preds = [apply_postprocess_batch(probs, [p] * C, None) for p in cells]
    truth = truth.astype(bool)
    slice_no = np.array([int(i.rsplit("_", 1)[1]) for i in ids])

    def score(pred: np.ndarray, true: np.ndarray, rows: np.ndarray | None = None) -> float:
        rows = np.arange(15) if rows is None else rows
        cases = [np.flatnonzero(case_of[rows] == k) for k in range(3)]
        cases = [idx[np.argsort(slice_no[rows][idx])] for idx in cases if idx.size]  # numeric slice order
        return _dice_hausdorff(pred, true, cases)

    table = grid_frame(result)
    for c, name in enumerate(CLASSES):
        full = np.array([score(preds[j][:, c], truth[:, c]) for j in range(len(cells))])
        assert np.ptp(full) > 0.05  # the cells differ: the probe is not degenerate
        np.testing.assert_allclose(table[table["class"] == name]["score"].to_numpy(), full, atol=1e-6)
        best = _best(full, cells)
        assert result.params[c] == cells[best]
        pred_cv = np.zeros_like(truth[:, c])
        for k in range(3):
            rest = np.flatnonzero(folds != k)
            part = [score(preds[j][rest, c], truth[rest, c], rest) for j in range(len(cells))]
            pred_cv[folds == k] = preds[_best(np.array(part), cells)][folds == k, c]
        assert result.choices[c].score_cv == pytest.approx(score(pred_cv, truth[:, c]), abs=1e-12)
    assert result.score_tuned >= result.score_default


def test_dice_hausdorff_refuses_a_case_split_between_folds(tmp_path) -> None:
    truth, probs, _ = _random_case(np.random.default_rng(1), 6)
    cfg, ids = _config(tmp_path, truth, "dice_hausdorff", {}, SMALL_GRID, volume=True)
    _write_oof(cfg, "exp", ids, np.array([0, 0, 0, 1, 1, 1]), probs, None, seed=1)  # case0 = rows 0 and 3
    with pytest.raises(ValueError, match=r"case 'case0_day0' has OOF slices in folds \[0, 1\]"):
        tune(cfg, progress=False)


def _origin(tile: str) -> tuple[int, int]:
    y0, x0 = tile.split("@")[1].split("_")
    return int(y0), int(x0)


def _owned(tiles: list[str], size: tuple[int, int], span: int) -> list[tuple[int, int, int, int]]:
    """Each tile's own pixels (top, bottom, left, right in its window), found by painting the slide: a pixel
    belongs to the first tile (grid order) whose window covers it. Checks they cover the slide as rectangles."""
    owner = np.full(size, -1)
    for k, tile in enumerate(tiles):
        y0, x0 = _origin(tile)
        view = owner[y0 : y0 + span, x0 : x0 + span]
        view[view < 0] = k
    assert (owner >= 0).all()
    boxes = []
    for k, tile in enumerate(tiles):
        (y0, x0), (ys, xs) = _origin(tile), np.nonzero(owner == k)
        box = (ys.min() - y0, ys.max() + 1 - y0, xs.min() - x0, xs.max() + 1 - x0)
        assert (box[1] - box[0]) * (box[3] - box[2]) == ys.size  # a rectangle
        boxes.append(box)
    return boxes


def _slide_dice(stats: pd.DataFrame) -> pd.Series:
    """Dice per slide of per-tile rows (inter i, areas a, slide s): each slide's sums, then one dice."""
    sums = stats.groupby("s", sort=False)[["i", "a"]].sum()
    return pd.Series(np.where(sums.a > 0, 2 * sums.i / sums.a.clip(lower=1), 1.0), index=sums.index)


def _tile_stats(probs, truth, boxes, slide, cell: ClassParams) -> pd.DataFrame:
    """Per tile, cropped to its own box, post-processed alone: intersection and areas."""
    rows = []
    for q, t, (top, bottom, left, right) in zip(probs, truth, boxes, strict=True):
        pred = apply_postprocess_batch(q[None, None, top:bottom, left:right], [cell])[0, 0].astype(bool)
        true = t[top:bottom, left:right]
        rows.append(((pred & true).sum(), pred.sum() + true.sum()))
    return pd.DataFrame(rows, columns=["i", "a"]).assign(s=slide.to_numpy())


def test_tiled_dice_is_tuned_per_slide_as_brute_force(tmp_path) -> None:
    """HuBMAP (tile.size > 0): the leaderboard is the mean over test slides of the whole-slide dice (mle-bench
    hubmap-kidney-segmentation grade.py). Random OOF on the tiles of 4 miniature slides in 3 folds (their last
    windows overlap the one before): every cell's score, the choice and the CV score equal a brute-force
    recomputation summing each slide's tiles over the pixels each holds alone, and at min_size 0 the whole-slide
    dice of the predictions pasted back onto the slide; ``kseg ensemble``'s greedy step scores per slide too."""
    root = write_miniature("hubmap", tmp_path / "data", seed=5, n_train=4, n_test=1, size=160)
    overrides = ["tile.size=24", "tile.downscale=2", "tile.overlap=0", f"runs_dir={tmp_path / 'runs'}"]
    tune_keys = ["tune.thresholds=[0.3,0.5,0.7]", "tune.min_sizes=[0,12]", "tune.min_areas=[0,60]", "tune.chunk_size=7"]
    cfg = load_config(REPO / "configs/hubmap/unet-tiles.yaml", [f"data.root={root}", *overrides, *tune_keys])
    train = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    fold_of = dict(zip(train.id, [0, 1, 1, 2], strict=True))
    pd.DataFrame({"id": train.id, "fold": list(fold_of.values())}).to_csv(cfg.folds_path, index=False)
    tiles = expand_tile_ids(cfg, list(train.id), root / "train")
    slide = pd.Series([t.split("@")[0] for t in tiles])
    span = cfg.tile.span
    sizes = {i: slide_size(root / "train" / f"{i}.tiff") for i in train.id}
    masks = {
        i: ref_decode(rle, sizes[i], **PUBLISHED["hubmap"]).astype(bool)
        for i, rle in zip(train.id, train.encoding, strict=True)
    }
    truth = np.zeros((len(tiles), span, span), dtype=bool)  # windows, zero past the slide's edge
    boxes = []
    for i in train.id:
        mine = np.flatnonzero(slide == i)
        boxes += _owned([tiles[k] for k in mine], sizes[i], span)
        for k in mine:
            y0, x0 = _origin(tiles[k])
            part = masks[i][y0 : y0 + span, x0 : x0 + span]
            truth[k, : part.shape[0], : part.shape[1]] = part
    assert any(b[0] > 0 or b[2] > 0 for b in boxes)  # some last windows overlap the window before
    rng = np.random.default_rng(3)
    blur = np.stack([cv2.GaussianBlur(t.astype(np.float32), (5, 5), 1.5) for t in truth])
    p = blur * rng.uniform(0.25, 0.9, (len(tiles), 1, 1)) + rng.random(truth.shape) ** 6 * 0.8
    p = np.where(rng.random(truth.shape) < 0.004, rng.uniform(0.55, 1.0, p.shape), p)  # false-positive specks
    probs = quantize(np.clip(p, 0, 1).astype(np.float32))  # [n tiles, span, span]
    _write_oof(cfg, cfg.name, tiles, slide.map(fold_of).to_numpy(), probs[:, None], None, seed=2)
    result = tune(cfg, progress=False)

    cells = [result.grid.params(j) for j in range(result.grid.size)]
    stats = [_tile_stats(probs, truth, boxes, slide, cell) for cell in cells]
    full = np.array([_slide_dice(st).mean() for st in stats])
    np.testing.assert_allclose(grid_frame(result)["score"].to_numpy(), full, atol=1e-6)  # rounded to 6 places
    assert result.table.sums[0].sum(axis=0) / 4 == pytest.approx(full, abs=1e-12)
    best = _best(full, cells)
    assert result.params[0] == cells[best] and result.n_images == 4  # a slide is one scored image
    held = []
    for k in range(3):
        rest = (slide.map(fold_of) != k).to_numpy()
        chosen = _best(np.array([_slide_dice(st[rest]).mean() for st in stats]), cells)
        held += _slide_dice(stats[chosen][~rest]).tolist()
    assert result.choices[0].score_cv == pytest.approx(np.mean(held), abs=1e-12)
    # min_size 0, min_area 0: the whole-slide dice of the thresholded tiles pasted back (each pixel once)
    for j in [j for j, cell in enumerate(cells) if cell.min_size == 0 and cell.min_area == 0]:
        dice = []
        for i in train.id:
            canvas = np.zeros(sizes[i], dtype=bool)
            for k in np.flatnonzero(slide == i):
                (y0, x0), (top, bottom, left, right) = _origin(tiles[k]), boxes[k]
                canvas[y0 + top : y0 + bottom, x0 + left : x0 + right] = probs[k, top:bottom, left:right] > int(
                    np.floor(cells[j].threshold * 255)
                )
            dice.append(2 * (canvas & masks[i]).sum() / max(canvas.sum() + masks[i].sum(), 1))
        assert full[j] == pytest.approx(np.mean(dice), abs=1e-12)
    # not degenerate: the mean over tiles (empty tiles scoring 1) is far from the mean over slides
    preds = [apply_postprocess_batch(probs[:, None], [cell])[:, 0].astype(bool) for cell in cells]
    per_tile = np.array([per_item_scores(pr[:, None], truth[:, None], "dice").mean() for pr in preds])
    assert np.abs(per_tile - full).max() > 0.05, (per_tile, full)
    # kseg ensemble's greedy step scores blends per slide too: step 1 = the better member's best threshold
    other = quantize(np.clip(blur * 0.6 + rng.random(truth.shape) ** 3 * 0.7, 0, 1).astype(np.float32))
    _write_oof(cfg, "hubmap/other", tiles, slide.map(fold_of).to_numpy(), other[:, None], None, seed=4)
    chosen = select_ensemble(cfg, [cfg.name, "hubmap/other"], steps=1, progress=False)
    plain = [j for j, cell in enumerate(cells) if cell.min_size == 0 and cell.min_area == 0]
    members = [
        full[plain].max(),
        max(_slide_dice(_tile_stats(other, truth, boxes, slide, cells[j])).mean() for j in plain),
    ]
    assert chosen.path.scores[0] == pytest.approx(max(members), abs=1e-12)
    assert chosen.path.added == [int(np.argmax(members))]
