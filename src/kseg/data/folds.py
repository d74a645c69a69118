"""``folds.csv``: written here (stratified K folds over class presence and mask-area bucket, grouped when the
spec says so: groups stay whole, folds balance images, not groups) and read back here (``read_folds``, checked
against the labels by ``check_folds``, split by ``fold_split``) by every stage."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from kseg.atomic import atomic_write_text
from kseg.competition import read_csv
from kseg.config import Config
from kseg.data.dataset import PSEUDO, read_labels
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
    areas = np.array([[area(i, c, r) for i, r in zip(ids, labels[c], strict=True)] for c in classes], dtype=np.int64)
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
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold  # scikit-learn: only when folds are made

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


# --------------------------------------------------------------------------- reading folds.csv


def folds_id_column(cfg: Config) -> str:
    """Name of the image-id column of folds.csv (the train csv's id column, or ImageId)."""
    csv = cfg.competition.train
    return csv.id_column if csv.format in ("single", "long") else "ImageId"


def read_folds(cfg: Config) -> pd.DataFrame:
    """``folds.csv`` as columns (image_id, fold); errors name the row and say how to recreate it.

    Every fold must be an integer in ``0 .. data.n_folds - 1`` and every image must appear once.
    """
    path = cfg.folds_path
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `kseg folds -c <config>` first")
    df = read_csv(path)
    col = folds_id_column(cfg)
    if col not in df.columns or "fold" not in df.columns:
        raise ValueError(f"{path}: expected columns {col!r}, 'fold'; got {list(df.columns)}")
    redo = "rerun `kseg folds -c <config> --force` (or fix the file)"
    fold = pd.to_numeric(df["fold"], errors="coerce")
    n = cfg.data.n_folds
    bad = fold.isna() | (fold != fold.round()) | (fold < 0) | (fold >= n)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(
            f"{path}: row {row + 2}: fold {df['fold'].iloc[row]!r} of image {df[col].iloc[row]!r} is not "
            f"an integer in 0..{n - 1} (data.n_folds={n}); {redo}"
        )
    out = pd.DataFrame({"image_id": df[col].astype(str), "fold": fold.astype(int)})
    dup = out.image_id.duplicated(keep=False)
    if dup.any():
        rows = np.flatnonzero(dup.to_numpy())
        first = out.image_id.iloc[rows[0]]
        twice = rows[(out.image_id.iloc[rows] == first).to_numpy()]
        raise ValueError(
            f"{path}: image {first!r} is listed more than once (rows {', '.join(str(r + 2) for r in twice)}, "
            f"folds {', '.join(str(out.fold.iloc[r]) for r in twice)}); {redo}"
        )
    return out


def check_folds(folds: pd.DataFrame, labels: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Raise when ``folds.csv`` and the training labels disagree: an id in only one of them (stale folds).

    With ``data.on_bad_image=skip`` ids without labels (in a long-format csv: image files that are gone)
    are logged and dropped instead; returns the folds to use.
    """
    train = labels.image_id[labels.source != PSEUDO] if "source" in labels else labels.image_id
    where = cfg.data_root / cfg.competition.train_csv
    redo = "folds.csv was made for other data: rerun `kseg folds -c <config> --force`"
    extra = ~folds.image_id.isin(train)
    if extra.any() and cfg.data.on_bad_image == "skip":
        log.warning(
            "skipping %d image(s) of %s with no training label or file (data.on_bad_image=skip): %s",
            int(extra.sum()),
            cfg.folds_path,
            folds.image_id[extra].tolist()[:5],
        )
        folds = folds[~extra]
    elif extra.any():
        row = int(np.flatnonzero(extra.to_numpy())[0])
        raise ValueError(
            f"{cfg.folds_path}: row {row + 2}: image {folds.image_id.iloc[row]!r} is not a training image "
            f"of {where} ({int(extra.sum())} such rows); {redo}"
        )
    missing = ~train.isin(folds.image_id)
    if missing.any():
        raise ValueError(
            f"{cfg.folds_path}: training image {train[missing].iloc[0]!r} of {where} has no fold "
            f"({int(missing.sum())} images missing); {redo}"
        )
    return folds


def fold_split(cfg: Config, fold: int, labels: pd.DataFrame | None = None) -> tuple[list[str], list[str]]:
    """(train_ids, val_ids) of ``fold``; pseudo-labelled images only ever go to training.

    With ``labels`` the fold table is first checked against them (``check_folds``).
    """
    folds = read_folds(cfg)
    if labels is not None:
        folds = check_folds(folds, labels, cfg)
    if fold not in set(folds.fold):
        raise ValueError(f"fold {fold} is not in {cfg.folds_path} (folds: {sorted(set(folds.fold))})")
    val = folds.image_id[folds.fold == fold].tolist()
    train = folds.image_id[folds.fold != fold].tolist()
    if labels is not None and "source" in labels:
        train += labels.image_id[labels.source == PSEUDO].tolist()
    return train, val
