"""``select_ensemble(cfg, runs)``: member weights chosen on the runs' OOF with an honest cross-validated estimate.

1. Every member is tuned alone (``tune``): its default, tuned (optimistic) and cross-validated score.
2. Greedy forward selection with replacement (``kseg.tune.caruana``) on the uint8 OOF store, on every fold (the
   in-sample weights, written to the ensemble file) and, for each fold k, on the other folds only.
3. The post-processing of the in-sample weights is tuned on their weighted OOF mean (``tune(weights=...)``):
   its ``score_tuned`` is the optimistic in-sample score (weights and post-processing chosen on all the labels).
4. Cross-validated estimate: for each fold k, the weights chosen without fold k, post-processing tuned on the
   other folds' images of their blend (``tune``'s own CV choice, ``Choice.cv_cells``), scored on fold k; the fold
   scores averaged weighted by fold size. Fold k's labels enter neither choice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from kseg.config import Config
from kseg.ensemble_spec import ensemble_record, write_ensemble
from kseg.layout import RunLayout
from kseg.train.truth import TruthTable
from kseg.tune.caruana import MemberChunk, SelectionPath, greedy_select
from kseg.tune.grid import Grid
from kseg.tune.oof_set import OOFSet, load_oof
from kseg.tune.run import TuneResult, tune
from kseg.tune.search import StatsTable

log = logging.getLogger(__name__)

SELECTION_GRIDS = ("thresholds", "tune")  # what the greedy steps tune along: thresholds only, or the tune grid
CACHE_BYTES = 1 << 30  # member chunks + truth below this are kept in memory across the greedy steps


@dataclass
class EnsembleResult:
    """What ``select_ensemble`` chose and measured (scores are means over image x class)."""

    runs: list[str]  # candidates, in --runs order
    folds: list[int]
    path: SelectionPath  # the in-sample selection
    splits: dict[int, SelectionPath]  # fold -> the selection made without it
    final: TuneResult  # the in-sample weights' post-processing
    held_scores: dict[int, float]  # fold -> score of its images under its split's weights + post-processing
    fold_images: dict[int, int]
    score_cv: float  # weights + post-processing chosen on K-1 folds, the held folds scored together
    members: dict[str, TuneResult] = field(default_factory=dict)  # each run tuned alone
    grid: str = "thresholds"

    @property
    def counts(self) -> dict[str, int]:
        return dict(zip(self.runs, self.path.best_counts().tolist(), strict=True))

    @property
    def weights(self) -> dict[str, float]:
        total = sum(self.counts.values())
        return {r: c / total for r, c in self.counts.items()}

    @property
    def score_tuned(self) -> float:
        """Optimistic: the in-sample weights and post-processing scored on the labels they were chosen on."""
        return self.final.score_tuned


def check_same_folds(oof: OOFSet) -> None:
    """Every run's OOF image must sit in the same fold as in the first run's (the CV needs one fold split)."""
    base = oof.fold_of(oof.names[0])
    for name in oof.names[1:]:
        for image_id, fold in oof.fold_of(name).items():
            if base[image_id] != fold:
                raise ValueError(
                    f"{RunLayout(Path('runs'), name).root}: OOF image {image_id!r} is in fold {fold}, but in fold "
                    f"{base[image_id]} of {oof.names[0]}: ensembled runs must be trained on the same folds.csv"
                )


def member_chunks(
    oof: OOFSet, truth: TruthTable, chunk_size: int, slide: np.ndarray | None = None
) -> Iterator[MemberChunk]:
    """Every member's OOF with the truth, chunk by chunk (fold positions into ``oof.folds``); tiles carry their own
    boxes (``TruthTable.boxes``) and, given ``slide`` int [len(oof)] (``OOFSet.slides``), their slide positions."""
    pos = {fold: i for i, fold in enumerate(oof.folds)}
    size = tuple(oof.shape[1:])
    rows = pd.Index(oof.ids)
    for chunk, q, aux in oof.member_chunks(chunk_size):
        fold = np.full(len(chunk.ids), pos[chunk.fold], dtype=np.int64)
        mine = None if slide is None else slide[rows.get_indexer(chunk.ids)]
        masks = truth.masks(chunk.ids, size)  # type: ignore[arg-type]
        yield MemberChunk(q, aux, masks, fold, truth.boxes(chunk.ids), mine)


def selection_grid(cfg: Config, name: str, has_aux: bool) -> Grid:
    """The grid the greedy steps tune along: ``thresholds`` (``tune.thresholds`` alone) or ``tune`` (all of it)."""
    if name == "thresholds":
        return Grid(thresholds=tuple(float(t) for t in cfg.tune.thresholds))
    if name == "tune":
        grid = Grid.from_config(cfg.tune)
        if grid.uses_aux and not has_aux:
            raise ValueError("tune.aux_gates > 0 need oof_aux.npy in every run (or --grid thresholds)")
        return grid
    raise ValueError(f"selection grid {name!r}: one of {', '.join(SELECTION_GRIDS)}")


def held_stats(result: TuneResult, fold: int) -> np.ndarray:
    """float64 [C, K]: the metric's statistics of ``fold``'s images under the post-processing ``result`` chose on
    the other folds (``Choice.cv_cells``); an item metric's (score sum, images)."""
    k, t = result.folds.index(fold), result.table
    cells = [ch.cv_cells[k] for ch in result.choices]
    if isinstance(t, StatsTable):
        return np.stack([t.stats[c, k, cell] for c, cell in enumerate(cells)])
    return np.array([[t.sums[c, k, cell], t.counts[k]] for c, cell in enumerate(cells)], dtype=np.float64)


def _weighted_tune(cfg: Config, runs: list[str], counts: np.ndarray, cache: dict) -> TuneResult:
    """``tune`` of the runs with counts > 0, weighted by their counts (memoised by the counts)."""
    key = tuple(int(c) for c in counts)
    if key not in cache:
        chosen = {r: float(c) for r, c in zip(runs, key, strict=True) if c > 0}
        cache[key] = tune(cfg, list(chosen), progress=False, weights=chosen if len(chosen) > 1 else None)
    return cache[key]


def select_ensemble(
    cfg: Config, runs: list[str], steps: int = 20, grid: str = "thresholds", progress: bool | None = None
) -> EnsembleResult:
    """Choose weights for ``runs`` and estimate their score honestly (module docstring)."""
    if len(runs) < 2 or len(set(runs)) != len(runs):
        raise ValueError(f"--runs: an ensemble needs two or more different runs, got {runs}")
    metric = cfg.competition.scorer
    if metric.kind == "volume":
        raise ValueError(f"kseg ensemble: metric {metric.name} scores whole volumes; only item and pooled metrics")
    members = {r: tune(cfg, [r], progress=False) for r in runs}  # also checks each run's OOF, folds and truth
    oof = load_oof(cfg, runs)
    check_same_folds(oof)
    truth = TruthTable(cfg)
    g = selection_grid(cfg, grid, oof.has_aux)
    nbytes = len(oof) * int(np.prod(oof.shape)) * (len(runs) + 1)
    # tiles of an item metric: the blends are scored per slide, as kseg tune scores them
    slide, _, slide_fold = oof.slides() if cfg.tile.enabled and metric.kind == "item" else (None, None, None)
    cached = list(member_chunks(oof, truth, cfg.tune.chunk_size, slide)) if nbytes < CACHE_BYTES else None

    def chunks() -> Iterator[MemberChunk]:
        return iter(cached) if cached is not None else member_chunks(oof, truth, cfg.tune.chunk_size, slide)

    held: list[int | None] = [None, *range(len(oof.folds))]
    log.info("ensemble: %d greedy steps over %s on %d OOF images, %d folds", steps, runs, len(oof), len(oof.folds))
    bar = tqdm(total=steps, desc="ensemble", unit="step", disable=None if progress is None else not progress)
    paths = greedy_select(
        chunks,
        len(runs),
        len(oof.folds),
        g,
        metric,
        steps,
        held,
        cfg.competition.exclusive,
        on_step=lambda _: bar.update(),
        slide_fold=slide_fold,
    )
    bar.close()
    cache: dict = {}
    final = _weighted_tune(cfg, runs, paths[0].best_counts(), cache)
    splits = dict(zip(oof.folds, paths[1:], strict=True))
    held = {f: held_stats(_weighted_tune(cfg, runs, p.best_counts(), cache), f) for f, p in splits.items()}
    held_scores = {f: metric.class_mean(metric.finalize(s)) for f, s in held.items()}
    cv = metric.class_mean(metric.finalize(sum(held.values())))  # the held folds' statistics together
    fold_images = {f: int(final.table.counts[final.folds.index(f)]) for f in oof.folds}
    return EnsembleResult(runs, list(oof.folds), paths[0], splits, final, held_scores, fold_images, cv, members, grid)


def _scores(r: TuneResult) -> dict[str, float | None]:
    return {"default": _num(r.score_default), "tuned": _num(r.score_tuned), "cv": _num(r.score_cv)}


def _num(x: float) -> float | None:
    """A score for JSON: None for NaN."""
    return None if x != x else round(float(x), 6)


def ensemble_dict(cfg: Config, result: EnsembleResult, steps: int) -> dict:
    """The ensemble file content of ``result`` (``kseg.ensemble_spec``)."""
    splits = {
        str(k): {"counts": p.best_counts().tolist(), "held_score": _num(result.held_scores[k])}
        for k, p in result.splits.items()
    }
    return ensemble_record(
        cfg.name,
        result.counts,
        result.folds,
        cfg.tune.oof_tta,
        metric=cfg.competition.metric,
        scores={
            "default": _num(result.final.score_default),
            "optimistic": _num(result.score_tuned),  # weights + post-processing chosen and scored on every fold
            "cv_postprocess_only": _num(result.final.score_cv),  # the in-sample weights, post-processing CV'd
            "cv": _num(result.score_cv),  # weights + post-processing chosen on K-1 folds, scored on the held one
        },
        member_scores={r: _scores(t) for r, t in result.members.items()},
        selection={
            "method": "greedy forward selection with replacement (Caruana et al. 2004)",
            "grid": result.grid,
            "steps": steps,
            "added": [result.runs[j] for j in result.path.added],
            "step_scores": [_num(s) for s in result.path.scores],
            "best_steps": result.path.best_steps,
            "splits": splits,
        },
    )


def write_ensemble_outputs(cfg: Config, result: EnsembleResult, steps: int, plots: bool = True) -> dict[str, Path]:
    """``runs/<ensemble>/``: ``ensemble.json``, ``config.yaml`` and the final tuning's ``postprocess.json``,
    ``tune.csv``, plots (``kseg.tune.report.write_outputs``); returns the paths."""
    from kseg.config import save_config
    from kseg.tune.report import write_outputs

    paths = write_outputs(cfg, result.final, plots=plots)
    paths["config"] = save_config(cfg)
    paths["ensemble"] = write_ensemble(cfg.layout.ensemble, ensemble_dict(cfg, result, steps))
    return paths
