"""Greedy forward selection with replacement on synthetic OOF: blends, scores and prefixes by hand, a noise member
gets no weight, a truth+noise member dominates, and a held fold's labels never change its split's choice."""

from __future__ import annotations

import numpy as np
import pytest

from kseg.metrics import build_metric
from kseg.tune.caruana import MemberChunk, SelectionPath, blend, greedy_select, path_score
from kseg.tune.grid import Grid

GRID = Grid(thresholds=(0.3, 0.5, 0.7))
DICE = build_metric("dice", {}, 1)


def test_blend_is_the_rounded_weighted_mean_by_hand() -> None:
    q = np.array([[[10]], [[40]]], dtype=np.uint8)  # [M=2, n=1, 1]
    assert blend(q, np.array([2, 1])).item() == 20  # (2 * 10 + 40) / 3
    assert blend(q, np.array([0, 3])).item() == 40
    q = np.array([[[10]], [[11]]], dtype=np.uint8)
    assert blend(q, np.array([1, 1])).item() == 10  # rint(10.5): half to even, as OOFSet averages
    with pytest.raises(ValueError, match="no member"):
        blend(q, np.array([0, 0]))


def test_path_score_and_best_prefix_by_hand() -> None:
    score_sums = np.array([[[3.0, 5.0], [4.0, 1.0]]])  # [C=1, F=2, cells=2]: dice sums of 5 images per fold
    sums = np.stack([score_sums, np.full_like(score_sums, 5.0)], axis=-1)  # item statistics (score, count)
    per_fold = np.array([5, 5])
    assert path_score(sums, per_fold, None, DICE) == pytest.approx(0.7)  # cell 1: (5 + 1) / 10 < cell 0: 7 / 10
    assert path_score(sums, per_fold, 0, DICE) == pytest.approx(0.8)  # fold 1 alone: cell 0, 4 / 5
    two = np.concatenate([sums, sums[:, :, ::-1]])  # class 2 prefers cell 1: 0.7 / 0.6 (folds 1: 0.8 / 0.2)
    assert path_score(two, per_fold, None, build_metric("dice", {"class_weights": [3, 1]}, 2)) == pytest.approx(0.7)
    p = SelectionPath(None, 3, added=[1, 1, 0, 2], scores=[0.5, 0.7, 0.7, 0.6])
    assert p.best_steps == 2 and p.best_counts().tolist() == [0, 2, 0]  # the shortest of the best prefixes
    assert p.counts().tolist() == [1, 2, 1]


def _synthetic(seed: int = 0, n: int = 90, folds: int = 3, size: int = 16):
    """Truth masks (a third empty), fold of each image, members: truth+noise, pure noise, truth+more noise."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((n, 1, size, size), dtype=bool)
    for i in range(n):
        if i % 3:
            y, x = rng.integers(0, size - 6, 2)
            h, w = rng.integers(3, 7, 2)
            truth[i, 0, y : y + h, x : x + w] = True
    fold = np.arange(n) % folds
    good = np.clip(truth * 170.0 + rng.normal(40, 35, truth.shape), 0, 255).astype(np.uint8)
    noise = rng.integers(0, 256, truth.shape).astype(np.uint8)
    worse = np.clip(truth * 120.0 + rng.normal(60, 60, truth.shape), 0, 255).astype(np.uint8)
    return truth, fold, np.stack([good, noise, worse])


def _chunks(q: np.ndarray, truth: np.ndarray, fold: np.ndarray, size: int = 32):
    def gen():
        for s in range(0, len(fold), size):
            yield MemberChunk(q[:, s : s + size], None, truth[s : s + size], fold[s : s + size])

    return gen


def _select(q, truth, fold, steps: int = 8):
    return greedy_select(_chunks(q, truth, fold), q.shape[0], 3, GRID, DICE, steps, [None, 0, 1, 2])


def test_noise_member_gets_no_weight_and_the_truth_member_dominates() -> None:
    truth, fold, q = _synthetic()
    paths = _select(q, truth, fold)
    for p in paths:
        counts = p.best_counts()
        weights = counts / counts.sum()
        assert counts[1] == 0, (p.held, counts)  # pure noise: never in the best prefix
        assert weights[0] >= 0.5 and weights[0] == weights.max(), (p.held, weights)
        assert p.added[0] == 0  # the best single member first
        assert p.scores[p.best_steps - 1] == max(p.scores)


def test_a_held_folds_labels_never_change_its_choice() -> None:
    """Perturb fold 0's labels (masks inverted, empty ones filled): the split that holds fold 0 out chooses the same
    members with the same scores; the in-sample choice, which sees those labels, scores differently."""
    truth, fold, q = _synthetic(seed=1)
    perturbed = truth.copy()
    perturbed[fold == 0] = ~perturbed[fold == 0]
    before, after = _select(q, truth, fold), _select(q, perturbed, fold)
    held0 = 1  # paths are [None, 0, 1, 2]
    assert after[held0].added == before[held0].added
    assert after[held0].scores == pytest.approx(before[held0].scores, abs=0)
    for k in (2, 3):  # splits that score fold 0's (perturbed) labels while choosing
        assert after[k].scores != before[k].scores
    assert after[0].scores != before[0].scores


def _slide_reference(q: np.ndarray, truth: np.ndarray, boxes: np.ndarray, slide: np.ndarray, keep: np.ndarray) -> float:
    """Best threshold of GRID by the mean over the kept slides of the dice of each slide's tiles summed, each tile
    on its box only (written from the definition: a loop over tiles and thresholds)."""
    best = -1.0
    for t in GRID.thresholds:
        inter: dict[int, int] = {}
        area: dict[int, int] = {}
        for i in np.flatnonzero(keep):
            top, bottom, left, right = boxes[i]
            pred = q[i, 0, top:bottom, left:right] > int(np.floor(t * 255))
            true = truth[i, 0, top:bottom, left:right]
            inter[slide[i]] = inter.get(slide[i], 0) + int((pred & true).sum())
            area[slide[i]] = area.get(slide[i], 0) + int(pred.sum() + true.sum())
        dice = [2 * inter[g] / area[g] if area[g] else 1.0 for g in inter]
        best = max(best, float(np.mean(dice)))
    return best


def test_tiles_are_scored_per_slide_on_their_own_pixels() -> None:
    """Tiles of 6 slides (5 each, some cropped to a box), 3 folds: each step's score is the per-slide dice (tiles
    summed, each on its own box) of the chosen blend's best threshold, on every fold or all but the held one."""
    truth, _, q = _synthetic(seed=2, n=30)
    slide = np.repeat(np.arange(6), 5)
    slide_fold = np.array([0, 0, 1, 1, 2, 2])
    fold = slide_fold[slide]
    rng = np.random.default_rng(0)
    boxes = np.stack([rng.integers(0, 6, 30), rng.integers(10, 17, 30), rng.integers(0, 6, 30), np.full(30, 16)], 1)

    def chunks():
        for s in range(0, 30, 8):
            part = slice(s, s + 8)
            yield MemberChunk(q[:, part], None, truth[part], fold[part], boxes[part], slide[part])

    paths = greedy_select(chunks, 3, 3, GRID, DICE, 1, [None, 0, 1, 2], slide_fold=slide_fold)
    for p in paths:
        keep = np.ones(30, bool) if p.held is None else fold != p.held
        scores = [_slide_reference(q[j], truth, boxes, slide, keep) for j in range(3)]
        assert p.added == [int(np.argmax(scores))]
        assert p.scores[0] == pytest.approx(max(scores), abs=1e-12)
    # the same chunks scored per tile (no slide) give other scores: the grouping matters here
    per_tile = greedy_select(
        lambda: (MemberChunk(c.q, None, c.truth, c.fold, c.boxes) for c in chunks()), 3, 3, GRID, DICE, 1, [None]
    )
    assert abs(per_tile[0].scores[0] - paths[0].scores[0]) > 1e-3
