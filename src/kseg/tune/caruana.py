"""Greedy forward selection with replacement of ensemble members on OOF probabilities (Caruana et al. 2004).

The ensemble is a multiset of members: ``counts[m]`` copies of member m, its blend the per-pixel mean
``rint(sum_m counts[m] * q[m] / sum(counts))`` of the uint8 OOF probabilities (what ``OOFSet`` computes with
weights ``counts``). Each step adds the member whose addition scores best (the first one on ties); after
``steps`` steps the prefix with the best score is kept (the shortest on ties), so a member that never helps
keeps weight 0.

Score of a blend on a set of folds: for each class the best cell of a post-processing ``Grid`` (threshold only,
or the whole ``tune`` grid) by the metric over the images of those folds (``Metric.finalize`` of its additive
per-image statistics summed over them: the mean of per-image scores for ``item`` metrics, one pooled score for
``pooled`` ones), then ``Metric.class_mean`` over classes: the post-processing is tuned along with the weights.
Tiled competitions score slides as ``kseg tune`` does: each tile on its own pixels (``MemberChunk.boxes``), and an
``item`` metric on each slide's summed statistics (``MemberChunk.slide`` with ``greedy_select(slide_fold=...)``).

Selection runs on several *paths* at once, one OOF pass per step: ``held=None`` chooses on every fold (the
in-sample weights); ``held=k`` chooses on the folds other than k only, so the held fold's labels never enter its
choice (they are read only to score the held fold afterwards).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from kseg.metrics import Metric, sum_groups
from kseg.postprocess import exclusive_candidates
from kseg.tune.grid import Grid
from kseg.tune.stats import class_grid_stats


@dataclass(frozen=True)
class MemberChunk:
    """A chunk of OOF images seen by every member: q uint8 [M, n, C, H, W], aux uint8 [M, n, C] | None, truth bool
    [n, C, H, W], fold int [n] (positions 0..F-1 into the fold list). Tiles: ``boxes`` int [n, 4] (each tile's own
    pixels, ``kseg.tiling.owned_boxes``) and, for ``item`` metrics, ``slide`` int [n] (slide positions 0..G-1)."""

    q: np.ndarray
    aux: np.ndarray | None
    truth: np.ndarray
    fold: np.ndarray
    boxes: np.ndarray | None = None
    slide: np.ndarray | None = None


@dataclass
class SelectionPath:
    """One greedy selection: ``held`` fold position left out of the choice (None: every fold), the members added
    step by step (``added``) and the score after each step (``scores``)."""

    held: int | None
    num_members: int
    added: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def counts(self, steps: int | None = None) -> np.ndarray:
        """int64 [M]: copies of each member after ``steps`` steps (default: all of them)."""
        return np.bincount(np.asarray(self.added[:steps], dtype=np.int64), minlength=self.num_members)

    @property
    def best_steps(self) -> int:
        """The number of steps of the best-scoring prefix (the shortest among equal scores)."""
        return int(np.argmax(self.scores)) + 1 if self.scores else 0

    def best_counts(self) -> np.ndarray:
        """int64 [M]: the members of the best prefix (``weights`` = counts / counts.sum())."""
        return self.counts(self.best_steps)


def blend(q: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """uint8 [n, ...]: ``rint(sum_m counts[m] * q[m] / sum(counts))`` over members q uint8 [M, n, ...]."""
    total = float(np.sum(counts))
    if total <= 0:
        raise ValueError("blend: no member has a weight")
    acc = np.tensordot(np.asarray(counts, dtype=np.float32), q.astype(np.float32), axes=1)
    return np.rint(acc / np.float32(total)).astype(np.uint8)


def _with_each(q: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """The blends ``blend(q, counts + e_j)`` for every member j (the running sum computed once)."""
    base = np.tensordot(counts.astype(np.float32), q.astype(np.float32), axes=1)
    total = np.float32(counts.sum() + 1)
    return [np.rint((base + q[j]) / total).astype(np.uint8) for j in range(q.shape[0])]


def fold_sums(
    q: np.ndarray, aux: np.ndarray | None, chunk: MemberChunk, grid: Grid, metric: Metric, folds: int, exclusive: bool
) -> np.ndarray:
    """float64 [C, F, cells, K]: the metric's additive statistics (``Metric.item_stats``) of every grid cell summed
    per class and fold for one blend (q uint8 [n, C, H, W], aux uint8 [n, C] | None) against ``chunk.truth``.

    With ``chunk.slide``: [C, G, cells, 3], the raw (inter, pred_area, true_area) summed per slide (``folds`` = G);
    ``greedy_select`` scores them per slide (``slide_scores``)."""
    q = exclusive_candidates(q) if exclusive else q
    n, num_classes = q.shape[:2]
    unit = chunk.fold if chunk.slide is None else chunk.slide
    onehot = np.zeros((n, folds), dtype=np.float64)
    onehot[np.arange(n), unit] = 1.0
    out: list[np.ndarray] = []
    for c in range(num_classes):
        st = class_grid_stats(q[:, c], chunk.truth[:, c], grid, None if aux is None else aux[:, c], chunk.boxes)
        if chunk.slide is None:
            stats = metric.item_stats(st.inter, st.pred_area, st.true_area)
        else:
            stats = np.stack(np.broadcast_arrays(st.inter, st.pred_area, st.true_area), axis=-1).astype(np.float64)
        out.append(np.einsum("snk,nf->fsk", stats.reshape(grid.size, n, stats.shape[-1]), onehot))
    return np.stack(out)


def slide_scores(sums: np.ndarray, slide_fold: np.ndarray, folds: int, metric: Metric) -> np.ndarray:
    """float64 [..., F, cells, 2]: per-slide raw statistics [..., G, cells, 3] scored once per slide
    (``Metric.item_scores``), then (score, 1) summed over each fold's slides (``slide_fold`` int [G])."""
    scores = metric.item_scores(*(np.rint(sums[..., k]).astype(np.int64) for k in range(3)))
    stats = np.stack([scores, np.ones_like(scores)], axis=-1)
    return sum_groups(stats, np.asarray(slide_fold, dtype=np.int64), folds, axis=-3)


def candidate_sums(
    chunk: MemberChunk, counts: np.ndarray, grid: Grid, metric: Metric, folds: int, exclusive: bool
) -> np.ndarray:
    """float64 [M, C, F, cells, K]: ``fold_sums`` of the ensemble ``counts`` with one more copy of each member."""
    qs = _with_each(chunk.q, counts)
    auxs = _with_each(chunk.aux, counts) if chunk.aux is not None else [None] * len(qs)
    return np.stack([fold_sums(q, a, chunk, grid, metric, folds, exclusive) for q, a in zip(qs, auxs, strict=True)])


def path_score(sums: np.ndarray, counts: np.ndarray, held: int | None, metric: Metric) -> float:
    """Score of a blend from its statistics [C, F, cells, K] and images per fold [F] on every fold but ``held``:
    per class the best cell's ``finalize``d score over those folds, then ``class_mean``."""
    keep = np.ones(sums.shape[1], dtype=bool)
    if held is not None:
        keep[held] = False
    if int(counts[keep].sum()) == 0:
        raise ValueError("no OOF images to choose ensemble weights on")
    scores = metric.finalize(sums[:, keep].sum(axis=1))  # [C, cells]
    return metric.class_mean(scores.max(axis=1))


def greedy_select(
    chunks: Callable[[], Iterable[MemberChunk]],
    num_members: int,
    folds: int,
    grid: Grid,
    metric: Metric,
    steps: int,
    held: list[int | None],
    exclusive: bool = False,
    on_step: Callable[[int], None] | None = None,
    slide_fold: np.ndarray | None = None,
) -> list[SelectionPath]:
    """Run one greedy selection per entry of ``held`` for ``steps`` steps; ``chunks()`` streams the OOF once per
    step (``MemberChunk``). Returns the paths in ``held`` order. ``slide_fold`` int [G] (tiles of an ``item``
    metric, chunks with ``slide``): each slide's fold position; the blends are scored per slide."""
    if num_members < 1 or steps < 1:
        raise ValueError(f"greedy_select: need members and steps, got {num_members} and {steps}")
    paths = [SelectionPath(h, num_members) for h in held]
    units = folds if slide_fold is None else len(slide_fold)  # what fold_sums sums over: folds or slides
    for step in range(steps):
        per_fold = np.zeros(folds, dtype=np.int64)
        acc: np.ndarray | None = None
        for chunk in chunks():
            per_fold += np.bincount(chunk.fold, minlength=folds)
            part = np.stack([candidate_sums(chunk, p.counts(), grid, metric, units, exclusive) for p in paths])
            acc = part if acc is None else acc + part  # [P, M, C, F (or G), cells, K]
        if acc is None:
            raise ValueError("greedy_select: no OOF images")
        if slide_fold is not None:
            acc = slide_scores(acc, slide_fold, folds, metric)
        for pi, p in enumerate(paths):
            scores = [path_score(acc[pi, j], per_fold, p.held, metric) for j in range(num_members)]
            best = int(np.argmax(scores))
            p.added.append(best)
            p.scores.append(float(scores[best]))
        if on_step is not None:
            on_step(step)
    return paths
