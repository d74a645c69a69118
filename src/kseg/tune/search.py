"""Score accumulation over chunks and the choice of parameters: optimistic and cross-validated.

Scores are summed per (class, fold, cell) so that choosing on K-1 folds is a subtraction. The metric
is a mean over image x class, so each class is chosen independently and the overall score is the mean
over classes.

Ties: cells whose score sum is within ``TIE_TOL * n_images`` of the best one are tied. Among tied cells
the untuned default ``ClassParams()`` (threshold 0.5, min_size 0, min_area 0, no max-prob or aux gate,
no triplet rule) wins when it is a grid cell, else the most conservative cell. Cell A is *more
conservative* than cell B when, comparing threshold, min_size, min_area, max_prob_gate, aux_gate and
top_threshold in this order, A's value is larger at the first parameter where they differ (a gate of 0
is off, the lowest value; top_threshold None, no triplet rule, is below any value). Raising any one of
the first five with the others fixed never keeps a pixel more (a higher threshold keeps a subset of the
pixels, the others only remove components or empty masks), so a tie goes to the cell that keeps fewest
pixels along the first axis that separates them; the order is total, so the choice is unique.
``Grid.tie_rank`` encodes it; without a rank (``tie_rank=None``) the first tied cell wins.

Tiled competitions (``tile.size > 0``) score whole slides: ``GroupedStats`` sums each slide's tile statistics
per cell and hands a ``ScoreTable`` of per-slide scores to the same choice (a slide is one image there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kseg.metrics.items import sum_groups

TIE_TOL = 1e-9  # cells within TIE_TOL * n_images of the best count as tied (see the module docstring)


def best_cell(sums: np.ndarray, count: int, tie_rank: np.ndarray | None = None) -> int:
    """Index of the best cell of score sums [cells] over ``count`` images.

    Among the cells within the tie tolerance of the max, the one of lowest ``tie_rank`` [cells]
    (``Grid.tie_rank``: default, then most conservative), or the first one when ``tie_rank`` is None.
    """
    top = float(sums.max())
    tied = np.flatnonzero(sums >= top - TIE_TOL * max(count, 1))
    if tie_rank is None:
        return int(tied[0])
    return int(tied[np.argmin(tie_rank[tied])])


@dataclass(frozen=True)
class Choice:
    """Result for one class. Scores are means over images; ``cv_cells`` [F] = cell chosen per held fold."""

    cell: int
    score_tuned: float
    score_default: float
    score_cv: float
    cv_cells: tuple[int, ...]


class _FoldSums:
    """Sums per (class, fold, cell): ``sums`` [C, F, cells, *width], ``default`` [C, F, *width]; ``counts`` [F]."""

    def __init__(
        self, num_classes: int, num_folds: int, num_cells: int, tie_rank: np.ndarray | None, width: tuple[int, ...]
    ) -> None:
        self.sums = np.zeros((num_classes, num_folds, num_cells, *width), dtype=np.float64)
        self.default = np.zeros((num_classes, num_folds, *width), dtype=np.float64)
        self.counts = np.zeros(num_folds, dtype=np.int64)
        if tie_rank is not None:
            tie_rank = np.asarray(tie_rank)
            if tie_rank.shape != (num_cells,):
                raise ValueError(f"{type(self).__name__}: tie_rank has shape {tie_rank.shape}, expected ({num_cells},)")
        self.tie_rank = tie_rank

    def add_images(self, fold_index: np.ndarray) -> None:
        """Count the images of a chunk: fold_index int [n] (positions into the fold axis)."""
        self.counts += np.bincount(fold_index, minlength=self.counts.size)

    def add(self, c: int, fold_index: np.ndarray, values: np.ndarray, default: np.ndarray) -> None:
        """Add one class's per-image values of a chunk: values float [cells, n, *width], default float [n, *width]."""
        for k in np.unique(fold_index):
            sel = fold_index == k
            self.sums[c, k] += values[:, sel].sum(axis=1)
            self.default[c, k] += default[sel].sum(axis=0)


class ScoreTable(_FoldSums):
    """Sums of per-image scores: ``sums`` [C, F, cells], ``default`` [C, F], ``counts`` [F].

    ``tie_rank`` int [cells] breaks ties between cells (``Grid.tie_rank``); None: the first cell wins.
    ``add(c, fold_index, scores [cells, n], default [n])`` books a chunk's per-image scores.
    """

    def __init__(self, num_classes: int, num_folds: int, num_cells: int, tie_rank: np.ndarray | None = None) -> None:
        super().__init__(num_classes, num_folds, num_cells, tie_rank, ())

    def choose(self, c: int) -> Choice:
        """Best cell on all images, its (optimistic) score, the default score and the CV score.

        CV: for every fold with images, choose on the other folds and score the held fold; the
        fold scores are averaged weighted by image count (= sum over folds / all images). NaN with
        fewer than two folds.
        """
        sums, counts = self.sums[c], self.counts
        n = int(counts.sum())
        if n == 0:
            raise ValueError("no OOF images to tune on")
        total = sums.sum(axis=0)
        cell = best_cell(total, n, self.tie_rank)
        present = np.flatnonzero(counts > 0)
        cv_cells: list[int] = []
        cv = float("nan")
        if present.size >= 2:
            held_sum = 0.0
            for k in present:
                chosen = best_cell(total - sums[k], n - int(counts[k]), self.tie_rank)
                cv_cells.append(chosen)
                held_sum += float(sums[k, chosen])
            cv = held_sum / n
        return Choice(
            cell=cell,
            score_tuned=float(total[cell]) / n,
            score_default=float(self.default[c].sum()) / n,
            score_cv=cv,
            cv_cells=tuple(cv_cells),
        )

    def cell_means(self, c: int) -> np.ndarray:
        """Mean score of every cell over all images [cells]."""
        return self.sums[c].sum(axis=0) / max(int(self.counts.sum()), 1)

    def fold_means(self, c: int) -> np.ndarray:
        """Mean score of every cell per fold [F, cells] (NaN for folds without images)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sums[c] / np.where(self.counts > 0, self.counts, np.nan)[:, None]


class StatsTable(_FoldSums):
    """Additive metric statistics per (class, fold, cell): ``stats`` [C, F, cells, K], ``default`` [C, F, K].

    For metrics that are not a mean of per-image scores (``pooled`` / ``volume`` kinds of
    ``kseg.metrics.Metric``): a cell's score is ``finalize`` of its statistics summed over the images
    (``global_dice``: intersections and areas), so choosing on K-1 folds is still a subtraction. The CV score is
    ``finalize`` of the held folds' statistics at the cells chosen without them, summed over folds (the whole
    OOF scored as the leaderboard would, each fold with its own choice). Ties as ``ScoreTable`` (on scores).
    ``add(c, fold_index, stats [cells, n, K], default [n, K])`` books a chunk's per-item statistics.
    """

    def __init__(
        self,
        num_classes: int,
        num_folds: int,
        num_cells: int,
        width: int,
        finalize: Callable[[np.ndarray], np.ndarray],
        tie_rank: np.ndarray | None = None,
    ) -> None:
        super().__init__(num_classes, num_folds, num_cells, tie_rank, (width,))
        self.finalize = finalize

    @property
    def stats(self) -> np.ndarray:
        """The summed statistics [C, F, cells, K] (``sums``)."""
        return self.sums

    def choose(self, c: int) -> Choice:
        """Best cell on all images, its score, the default score and the CV score (see the class docstring)."""
        stats, counts = self.stats[c], self.counts
        if int(counts.sum()) == 0:
            raise ValueError("no OOF images to tune on")
        total = stats.sum(axis=0)
        scores = self.finalize(total)
        cell = best_cell(scores, 1, self.tie_rank)
        present = np.flatnonzero(counts > 0)
        cv_cells: list[int] = []
        cv = float("nan")
        if present.size >= 2:
            held = np.zeros(stats.shape[-1])
            for k in present:
                chosen = best_cell(self.finalize(total - stats[k]), 1, self.tie_rank)
                cv_cells.append(chosen)
                held += stats[k, chosen]
            cv = float(self.finalize(held))
        return Choice(
            cell=cell,
            score_tuned=float(scores[cell]),
            score_default=float(self.finalize(self.default[c].sum(axis=0))),
            score_cv=cv,
            cv_cells=tuple(cv_cells),
        )

    def cell_means(self, c: int) -> np.ndarray:
        """Score of every cell over all images [cells] (named like ``ScoreTable``'s)."""
        return self.finalize(self.stats[c].sum(axis=0))

    def fold_means(self, c: int) -> np.ndarray:
        """Score of every cell per fold [F, cells] (NaN for folds without images)."""
        out = self.finalize(self.stats[c])
        out[self.counts == 0] = np.nan
        return out


class GroupedStats:
    """Raw statistics of every cell summed per group of OOF rows (the tiles of a slide), for ``item`` metrics.

    ``sums`` int64 [C, cells, G, 3] and ``default`` [C, G, 3] hold (inter, pred_area, true_area) per group;
    ``group_fold`` int [G] is each group's position on the fold axis (a group lies in one fold). ``table`` scores
    every group once (``score(inter, pred_area, true_area)``, a metric's ``item_scores``) into a ``ScoreTable``
    whose images are the groups.
    """

    def __init__(self, num_classes: int, num_folds: int, num_cells: int, group_fold: np.ndarray) -> None:
        self.group_fold = np.asarray(group_fold, dtype=np.int64)
        if self.group_fold.ndim != 1 or (
            self.group_fold.size and not 0 <= self.group_fold.min() <= self.group_fold.max() < num_folds
        ):
            raise ValueError(f"GroupedStats: group_fold must be fold positions in 0..{num_folds - 1}")
        self.num_folds, g = num_folds, self.group_fold.size
        self.sums = np.zeros((num_classes, num_cells, g, 3), dtype=np.int64)
        self.default = np.zeros((num_classes, g, 3), dtype=np.int64)

    def add(
        self,
        c: int,
        group: np.ndarray,
        inter: np.ndarray,
        pred_area: np.ndarray,
        true_area: np.ndarray,
        default: tuple[np.ndarray, np.ndarray],
    ) -> None:
        """Book one class of a chunk: group int [n], inter / pred_area [cells, n], true_area [n], default
        (inter, pred_area) [n] at threshold 0.5."""
        true = np.broadcast_to(true_area, inter.shape)
        self.sums[c] += sum_groups(np.stack([inter, pred_area, true], axis=-1), group, self.group_fold.size, axis=1)
        self.default[c] += sum_groups(np.stack([*default, true_area], axis=-1), group, self.group_fold.size)

    def table(
        self, score: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], tie_rank: np.ndarray | None
    ) -> ScoreTable:
        """The ``ScoreTable`` of per-group scores: ``counts`` [F] = groups per fold."""
        num_classes, num_cells = self.sums.shape[:2]
        out = ScoreTable(num_classes, self.num_folds, num_cells, tie_rank)
        out.add_images(self.group_fold)
        for c in range(num_classes):
            s, d = self.sums[c], self.default[c]
            out.add(c, self.group_fold, score(s[..., 0], s[..., 1], s[..., 2]), score(d[:, 0], d[:, 1], d[:, 2]))
        return out
