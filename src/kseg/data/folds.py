"""Stratified K folds over class presence and mask-area bucket (grouped when the spec says so: groups stay
whole, folds balance images, not groups)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

from kseg.atomic import atomic_write_text
from kseg.config import Config
from kseg.data.dataset import folds_id_column, read_labels
from kseg.data.rle import KAGGLE, RleDialect, rle_area

log = logging.getLogger(__name__)


def stratification_targets(labels: pd.DataFrame, classes: tuple[str, ...], dialect: RleDialect = KAGGLE) -> np.ndarray:
    """Binary targets [N, C + 3]: class presence per class + one-hot area bucket (empty/small/large).

    The small/large split is the median total mask area of the non-empty images.
    """
    def area(image_id: str, c: str, rle: str) -> int:
        try:
            return rle_area(rle, dialect)
        except ValueError as e:
            raise ValueError(f"image {image_id!r} class {c}: malformed RLE in the training labels: {e}") from e

    ids = labels["image_id"] if "image_id" in labels else labels.index
    areas = np.array([[area(i, c, r) for i, r in zip(ids, labels[c])] for c in classes], dtype=np.int64)
    areas = areas.T.reshape(len(labels), len(classes))
    presence = (areas > 0).astype(np.int8)
    total = areas.sum(axis=1)
    nonempty = total > 0
    cut = np.median(total[nonempty]) if nonempty.any() else 0
    bucket = np.zeros((len(labels), 3), dtype=np.int8)
    bucket[~nonempty, 0] = 1
    bucket[nonempty & (total <= cut), 1] = 1
    bucket[nonempty & (total > cut), 2] = 1
    return np.concatenate([presence, bucket], axis=1)


ORDER_JITTER = 0.25  # grouped folds: each group's size is scaled by a seeded factor in [1 - j, 1 + j] to order them


def assign_folds(targets: np.ndarray, n_folds: int, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Fold index per row [N] from multilabel targets [N, T]; rows of one group share a fold.

    Without groups: iterative multilabel stratification over the rows. With groups: ``group_folds``, which
    balances the folds' image counts (not their group counts) and the targets' image counts.
    """
    if groups is None:
        if len(targets) < n_folds:
            raise ValueError(f"data.n_folds={n_folds} but only {len(targets)} images")
        splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        folds = np.full(len(targets), -1, dtype=np.int64)
        for k, (_, val) in enumerate(splitter.split(np.zeros(len(targets)), targets)):
            folds[val] = k
        return folds
    keys, inverse = np.unique(groups, return_inverse=True)
    if len(keys) < n_folds:
        raise ValueError(f"data.n_folds={n_folds} but only {len(keys)} groups")
    counts = np.zeros((len(keys), targets.shape[1]), dtype=np.int64)
    np.add.at(counts, inverse, targets.astype(np.int64))  # images of the group with each target
    return group_folds(counts, np.bincount(inverse), n_folds, seed)[inverse]


def group_folds(counts: np.ndarray, sizes: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold per group [G] from per-group target image counts [G, T] and group sizes (images) [G].

    Deterministic greedy: groups from the largest (sizes scaled by a seeded factor, ``ORDER_JITTER``), each
    to a fold it fits in (at most ceil(N / K) images; else the fold with the fewest images), choosing the
    fold with the least of its targets so far (each target weighted by 1 / its total^2), then the fewest images.
    Fold sizes end within about one small group of N / K; the first K groups open the K folds.
    """
    g, k_all = len(sizes), np.arange(n_folds)
    rng = np.random.default_rng(seed)
    key = sizes * rng.uniform(1 - ORDER_JITTER, 1 + ORDER_JITTER, g)
    order = np.lexsort((rng.permutation(g), -key))
    cap = -(-int(sizes.sum()) // n_folds)
    totals = counts.sum(axis=0)
    weight = np.where(totals > 0, 1.0 / np.maximum(totals, 1).astype(np.float64) ** 2, 0.0)
    fold_n = np.zeros(n_folds, dtype=np.int64)
    fold_c = np.zeros((n_folds, counts.shape[1]), dtype=np.float64)
    fold_of = np.empty(g, dtype=np.int64)
    for i in order:  # one step per group
        fits = fold_n + sizes[i] <= cap
        cand = k_all[fits] if fits.any() else k_all[[int(np.argmin(fold_n))]]
        cost = fold_c[cand] @ (counts[i] * weight)
        k = cand[np.lexsort((cand, fold_n[cand], cost))[0]]
        fold_of[i] = k
        fold_n[k] += sizes[i]
        fold_c[k] += counts[i]
    return fold_of


def fold_units(cfg: Config) -> tuple[int, str]:
    """(how many units the folds split, their name): groups under ``group_pattern``, else images."""
    labels = read_labels(cfg)
    groups = cfg.competition.group_of(labels.image_id)
    return (len(labels), "images") if groups is None else (int(groups.nunique()), "groups")


def make_folds(cfg: Config) -> tuple[pd.DataFrame, np.ndarray]:
    """(DataFrame (image_id, fold), stratification targets [N, C + 3]) for the training images."""
    spec = cfg.competition
    labels = read_labels(cfg)
    targets = stratification_targets(labels, spec.classes, spec.rle)
    groups = spec.group_of(labels.image_id)
    folds = assign_folds(targets, cfg.data.n_folds, cfg.data.fold_seed, None if groups is None else groups.to_numpy())
    return pd.DataFrame({"image_id": labels.image_id.to_numpy(), "fold": folds}), targets


def fold_table(folds: pd.DataFrame, targets: np.ndarray, classes: tuple[str, ...]) -> pd.DataFrame:
    """Per-fold counts: images, empty share, images with each class."""
    rows = []
    for k in sorted(folds.fold.unique()):
        sel = (folds.fold == k).to_numpy()
        row = {"fold": int(k), "images": int(sel.sum()), "empty%": round(100 * targets[sel, len(classes)].mean(), 2)}
        row.update({c: int(targets[sel, i].sum()) for i, c in enumerate(classes)})
        rows.append(row)
    total = {"fold": "all", "images": len(folds), "empty%": round(100 * targets[:, len(classes)].mean(), 2)}
    total.update({c: int(targets[:, i].sum()) for i, c in enumerate(classes)})
    return pd.DataFrame(rows + [total])


def write_folds(cfg: Config, force: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write ``folds.csv`` (id column, fold) once; refuses to overwrite without ``force``.

    Returns (folds, per-fold table).
    """
    path = cfg.folds_path
    if path.exists() and not force:
        raise FileExistsError(f"{path} already exists; every stage reads it. Use --force to overwrite it")
    folds, targets = make_folds(cfg)
    out = pd.DataFrame({folds_id_column(cfg): folds.image_id, "fold": folds.fold})
    atomic_write_text(path, out.to_csv(index=False))
    log.info("wrote %s (%d images, %d folds)", path, len(out), cfg.data.n_folds)
    return folds, fold_table(folds, targets, cfg.competition.classes)
