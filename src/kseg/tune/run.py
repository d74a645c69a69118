"""``tune(cfg, runs)``: stream the OOF store, score every grid cell per class, choose, report."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from tqdm.auto import tqdm

from kseg.config import Config
from kseg.layout import RunLayout
from kseg.metrics import Metric
from kseg.postprocess import ClassParams, exclusive_candidates
from kseg.train.truth import TruthTable
from kseg.tune.grid import Grid
from kseg.tune.oof_set import OOFSet, check_against_folds, load_oof
from kseg.tune.search import Choice, GroupedStats, ScoreTable, StatsTable
from kseg.tune.stats import ChunkStats, class_grid_stats
from kseg.tune.volume import score_cases

log = logging.getLogger(__name__)


Table = ScoreTable | StatsTable


@dataclass
class TuneResult:
    """Chosen parameters and scores (per class, then the (weighted) mean over classes) of one tuning run."""

    classes: list[str]
    params: list[ClassParams]
    choices: list[Choice]
    grid: Grid
    runs: list[str]
    metric: str
    folds: list[int]
    table: Table
    exclusive: bool = False  # tuned with the exclusive-class rule (kseg.postprocess.exclusive_candidates)
    selection: dict[str, str] = field(default_factory=dict)  # run -> train.select of its OOF epochs
    metric_params: dict = field(default_factory=dict)  # competition.metric_params
    class_weights: tuple[float, ...] = ()  # the metric's weights of the per-class scores (() = equal)
    weights: dict[str, float] = field(default_factory=dict)  # run -> weight in the OOF mean ({}: equal)

    @property
    def n_images(self) -> int:
        return int(self.table.counts.sum())

    def _mean(self, attr: str) -> float:
        values = [getattr(c, attr) for c in self.choices]
        if any(math.isnan(v) for v in values):
            return float("nan")
        return float(np.average(values, weights=self.class_weights or None))

    @property
    def score_default(self) -> float:
        """Threshold 0.5, no min size, no gates."""
        return self._mean("score_default")

    @property
    def score_tuned(self) -> float:
        """Chosen parameters scored on the OOF they were chosen on (optimistic)."""
        return self._mean("score_tuned")

    @property
    def score_cv(self) -> float:
        """Parameters chosen on K-1 folds, scored on the held fold, weighted by fold size."""
        return self._mean("score_cv")


def epoch_selection(cfg: Config, runs: list[str]) -> dict[str, str]:
    """{run: how its folds' checkpoint + OOF epoch was chosen}, from ``runs/<run>/config.yaml``.

    ``best`` (highest val metric on the held fold itself), ``last`` (``train.select=last``; ``last+plateau``
    when a plateau schedule still followed the held fold's metric) or ``unknown`` (no readable config).
    """
    out = {}
    for run in runs:
        path = RunLayout(Path(cfg.runs_dir), run).config
        try:
            saved = yaml.safe_load(path.read_text()) or {}
            train, sched = saved.get("train") or {}, saved.get("sched") or {}
        except (OSError, yaml.YAMLError, AttributeError):
            out[run] = "unknown"
            continue
        select = str(train.get("select", "best"))
        out[run] = "last+plateau" if select == "last" and sched.get("name") == "plateau" else select
    return out


def _check_size(cfg: Config, oof: OOFSet) -> None:
    spec = cfg.competition
    c, h, w = oof.shape
    if c != spec.num_classes:
        raise ValueError(
            f"OOF of {oof.names[0]} has {c} class channels, competition {spec.name} has {spec.num_classes}"
        )
    want = spec.oof_size or spec.submission_size
    if want and (h, w) != tuple(want):
        raise ValueError(
            f"OOF of {oof.names[0]} is {h}x{w}, but competition {spec.name} stores OOF at "
            f"{want[0]}x{want[1]} (competition.oof_size, else submission_size)"
        )


def _load_checked(
    cfg: Config, runs: list[str], weights: dict[str, float] | None = None
) -> tuple[OOFSet, Grid, TruthTable]:
    """The OOF store of ``runs``, the tune grid and the truth, checked against each other and the config."""
    oof = load_oof(cfg, runs, weights)
    _check_size(cfg, oof)
    check_against_folds(cfg, oof)
    grid = Grid.from_config(cfg.tune)
    if grid.uses_aux and not oof.has_aux:
        raise ValueError("tune.aux_gates > 0 need fold*/oof_aux.npy (aux-head OOF) in every run folder")
    truth = TruthTable(cfg)
    truth.check(oof.ids)
    return oof, grid, truth


def _add_class(
    table: Table | GroupedStats, metric: Metric, c: int, index: np.ndarray, st: ChunkStats, cells: int
) -> None:
    """Book one class's grid statistics of a chunk (``index`` [n]: the rows' fold positions, or slide groups for a
    ``GroupedStats``): raw statistics per slide, per-item scores (``item``) or additive statistics (``pooled``)."""
    n = len(index)
    if isinstance(table, GroupedStats):
        inter, pred = st.inter.reshape(cells, n), st.pred_area.reshape(cells, n)
        table.add(c, index, inter, pred, st.true_area, (st.default_inter, st.default_pred_area))
        return
    if isinstance(table, ScoreTable):
        scores = metric.item_scores(st.inter, st.pred_area, st.true_area).reshape(cells, n)
        table.add(c, index, scores, metric.item_scores(st.default_inter, st.default_pred_area, st.true_area))
        return
    stats = metric.item_stats(st.inter, st.pred_area, st.true_area)
    default = metric.item_stats(st.default_inter, st.default_pred_area, st.true_area)
    table.add(c, index, stats.reshape(cells, n, stats.shape[-1]), default)


def _score_chunks(
    cfg: Config, oof: OOFSet, grid: Grid, truth: TruthTable, progress: bool | None, runs: list[str]
) -> Table:
    """Score every grid cell per class on the OOF, ``cfg.tune.chunk_size`` images at a time.

    ``item`` metrics sum per-image scores (``ScoreTable``), ``pooled`` ones their additive statistics
    (``StatsTable``); both vectorized over the cells. ``volume`` metrics go case by case (``score_cases``).
    With ``tile.size > 0`` an ``item`` metric's image is the slide: its tiles' statistics are summed per cell
    (``GroupedStats``) and each slide is scored once, as the leaderboard scores whole test slides.
    """
    metric = cfg.competition.scorer
    if metric.kind == "volume":
        return score_cases(cfg, oof, grid, truth, metric, progress)
    size: tuple[int, int] = oof.shape[1:]  # type: ignore[assignment]
    num_classes = oof.shape[0]
    # tiled competitions: an item metric scores whole slides (OOFSet.slides); pooled ones need no groups
    groups, slides, slide_fold = oof.slides() if cfg.tile.enabled and metric.kind == "item" else (None, None, None)
    table = _new_table(metric, oof, grid, slide_fold)
    exclusive = cfg.competition.exclusive
    fold_pos = {fold: i for i, fold in enumerate(oof.folds)}
    chunk_size = max(1, cfg.tune.chunk_size)
    n_chunks = sum(math.ceil(len(f.ids) / chunk_size) for f in oof.experiments[oof.names[0]])
    log.info(
        "tuning %d cells x %d classes on %d OOF images of %s (%d folds), metric %s (%s reduction, vectorized%s)",
        grid.size,
        num_classes,
        len(oof),
        ", ".join(runs),
        len(oof.folds),
        metric.name,
        metric.kind,
        "" if slides is None else f", tiles summed per slide: {len(slides)} slides scored",
    )
    rows = pd.Index(oof.ids)
    bar = tqdm(
        oof.chunks(chunk_size),
        total=n_chunks,
        desc="tune",
        unit="chunk",
        disable=None if progress is None else not progress,
    )
    for chunk in bar:
        n = len(chunk.ids)
        masks = truth.masks(chunk.ids, size)
        fold_index = np.full(n, fold_pos[chunk.fold], dtype=np.int64)
        if isinstance(table, GroupedStats):
            index = groups[rows.get_indexer(chunk.ids)]  # type: ignore[index]
        else:
            table.add_images(fold_index)
            index = fold_index
        q = exclusive_candidates(chunk.q) if exclusive else chunk.q
        boxes = truth.boxes(chunk.ids)  # tiles: each tile's own pixels, so a slide pixel counts once
        for c in range(num_classes):
            aux = None if chunk.aux is None else chunk.aux[:, c]
            st = class_grid_stats(q[:, c], masks[:, c], grid, aux, boxes)
            _add_class(table, metric, c, index, st, grid.size)
    return table.table(metric.item_scores, grid.tie_rank()) if isinstance(table, GroupedStats) else table


def _new_table(metric: Metric, oof: OOFSet, grid: Grid, slide_fold: np.ndarray | None) -> Table | GroupedStats:
    """The accumulator of ``metric``'s kind; ``slide_fold`` int [G] (tiles, ``OOFSet.slides``): an ``item`` metric
    then sums each slide's raw statistics first (``GroupedStats``)."""
    num_classes, folds = oof.shape[0], len(oof.folds)
    if metric.kind == "item" and slide_fold is not None:
        return GroupedStats(num_classes, folds, grid.size, slide_fold)
    if metric.kind == "item":
        return ScoreTable(num_classes, folds, grid.size, grid.tie_rank())
    width = metric.item_stats(0, 0, 0).shape[-1]
    return StatsTable(num_classes, folds, grid.size, width, metric.finalize, grid.tie_rank())


def tune(
    cfg: Config, runs: list[str] | None = None, progress: bool | None = None, weights: dict[str, float] | None = None
) -> TuneResult:
    """Grid-search post-processing on the OOF predictions of ``runs`` (default: ``cfg.name``).

    Streams ``cfg.tune.chunk_size`` images at a time; memory is bounded by the chunk, not the OOF.
    Exclusive competitions (``competition.exclusive``) score every cell on the argmax candidates of
    ``exclusive_candidates``, the rule ``kseg predict`` applies.
    ``progress=None`` shows the progress bar only on a terminal. ``weights`` {run: weight > 0} weigh the runs'
    OOF mean (default equal; ``kseg ensemble``).
    """
    runs = list(runs or [cfg.name])
    oof, grid, truth = _load_checked(cfg, runs, weights)
    table = _score_chunks(cfg, oof, grid, truth, progress, runs)
    choices = [table.choose(c) for c in range(oof.shape[0])]
    return TuneResult(
        classes=list(cfg.competition.classes),
        params=[grid.params(ch.cell) for ch in choices],
        choices=choices,
        grid=grid,
        runs=runs,
        metric=cfg.competition.metric,
        folds=list(oof.folds),
        table=table,
        exclusive=cfg.competition.exclusive,
        selection=epoch_selection(cfg, runs),
        metric_params=dict(cfg.competition.metric_params),
        class_weights=cfg.competition.scorer.class_weights,
        weights=dict(weights or {}),
    )
