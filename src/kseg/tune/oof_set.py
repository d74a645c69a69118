"""Reading out-of-fold predictions (``runs/<exp>/fold<K>/oof.npy`` + ``oof_ids.csv``); truth: ``kseg.train.truth``.

OOF arrays are memory-mapped and read chunk by chunk; several experiments are averaged image by image
(aligned by image id). Averaging works on the stored uint8 values: ``rint(mean(q))`` (float32), i.e.
the mean probability quantized again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kseg.config import Config
from kseg.data.folds import read_folds
from kseg.layout import OOF_FILE, RUNS_DIR, RunLayout, fold_dir_name, fold_dirs, oof_files
from kseg.tiling import slide_groups, slide_ids

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoldOOF:
    """One fold's OOF store: probs uint8 [n, C, H, W] (memory-mapped), ids [n], aux uint8 [n, C] | None."""

    exp: str
    fold: int
    probs: np.ndarray
    ids: tuple[str, ...]
    aux: np.ndarray | None


def open_fold(exp: str, fold: int, folder: Path, tta: str = "") -> FoldOOF:
    """Open ``folder/oof.npy`` (mmap), ``oof_ids.csv`` and the optional ``oof_aux.npy``; checks shapes.

    ``tta`` picks the re-predicted OOF of ``kseg predict --oof --tta NAME`` instead (``oof_tta-NAME*``).
    """
    probs_name, ids_name, aux_name = oof_files(tta)
    path = folder / probs_name
    try:
        probs = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read OOF predictions: {e}") from e
    if probs.dtype != np.uint8 or probs.ndim != 4:
        raise ValueError(f"{path}: expected uint8 [N, C, H, W] (probability x 255), got {probs.dtype} {probs.shape}")
    ids_path = folder / ids_name
    if not ids_path.is_file():
        raise FileNotFoundError(f"{ids_path} not found (written next to {path} by kseg train / kseg predict --oof)")
    ids = pd.read_csv(ids_path, dtype=str, keep_default_na=False)
    if "image_id" not in ids.columns:
        raise ValueError(f"{ids_path}: missing column 'image_id'; columns are {list(ids.columns)}")
    if len(ids) != probs.shape[0]:
        raise ValueError(f"{ids_path}: {len(ids)} ids for {probs.shape[0]} OOF images in {path}")
    dup = ids["image_id"].duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise ValueError(f"{ids_path}: row {row + 2}: duplicate image id {ids['image_id'].iloc[row]!r}")
    aux = None
    aux_path = folder / aux_name
    if aux_path.is_file():
        aux = np.load(aux_path)
        if aux.dtype != np.uint8 or aux.shape != probs.shape[:2]:
            raise ValueError(f"{aux_path}: expected uint8 {probs.shape[:2]}, got {aux.dtype} {aux.shape}")
    return FoldOOF(exp, fold, probs, tuple(ids["image_id"].tolist()), aux)


def find_folds(run_dir: Path, exp: str, tta: str = "") -> list[FoldOOF]:
    """Every ``fold<K>/`` of an experiment holding an OOF store (training's, or the ``tta`` one), by fold number."""
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir} (train the experiment first)")
    probs_name = oof_files(tta)[0]
    found = []
    for fold, child in fold_dirs(run_dir):
        if (child / probs_name).is_file():
            found.append(open_fold(exp, fold, child, tta))
    if not found:
        how = f"run kseg predict --oof --tta {tta}" if tta else "run kseg train"
        raise FileNotFoundError(f"no fold*/{probs_name} under {run_dir} ({how} first)")
    return sorted(found, key=lambda f: f.fold)


@dataclass(frozen=True)
class Chunk:
    """A chunk of OOF images of one fold: q uint8 [n, C, H, W], aux uint8 [n, C] | None."""

    ids: list[str]
    fold: int
    q: np.ndarray
    aux: np.ndarray | None


class OOFSet:
    """OOF predictions of one or more experiments, aligned by image id; folds of the first one.

    Every experiment must cover the same images with the same (C, H, W). ``weights`` {experiment: weight > 0}
    (default 1 each) weigh them in ``chunks``' mean (``kseg ensemble``'s chosen weights).
    """

    def __init__(self, experiments: dict[str, list[FoldOOF]], weights: Mapping[str, float] | None = None) -> None:
        if not experiments:
            raise ValueError("no experiments to tune on")
        self.names = list(experiments)
        self.experiments = experiments
        self.weights = {name: float(weights[name]) if weights else 1.0 for name in self.names}
        bad = [name for name, w in self.weights.items() if not w > 0]
        if bad:
            raise ValueError(f"OOF weights must be > 0, got {self.weights[bad[0]]} for {bad[0]}")
        base = experiments[self.names[0]]
        self.shape = tuple(base[0].probs.shape[1:])
        self.folds = [f.fold for f in base]
        self.ids: list[str] = [i for f in base for i in f.ids]
        dup = pd.Index(self.ids).duplicated()
        if dup.any():
            first = self.ids[int(np.flatnonzero(dup)[0])]
            raise ValueError(f"experiment {self.names[0]}: image {first!r} is in the OOF of more than one fold")
        id_set = set(self.ids)
        self.has_aux = all(f.aux is not None for folds in experiments.values() for f in folds)
        self._where: dict[str, dict[str, tuple[int, int]]] = {}
        for name, folds in experiments.items():
            where = {}
            for fi, f in enumerate(folds):
                if tuple(f.probs.shape[1:]) != self.shape:
                    raise ValueError(
                        f"{RUNS_DIR}/{name}/{fold_dir_name(f.fold)}/{OOF_FILE}: shape [C, H, W] = {f.probs.shape[1:]}, "
                        f"but {RUNS_DIR}/{self.names[0]} has {self.shape}"
                    )
                for row, image_id in enumerate(f.ids):
                    where[image_id] = (fi, row)
            missing = [i for i in self.ids if i not in where]
            extra = [i for i in where if i not in id_set]
            if missing or extra:
                what = f"lacks image {missing[0]!r}" if missing else f"has extra image {extra[0]!r}"
                raise ValueError(
                    f"experiment {name} {what} compared with {self.names[0]}: "
                    "ensembled experiments must share their OOF images"
                )
            self._where[name] = where

    def __len__(self) -> int:
        return len(self.ids)

    def _gather(self, name: str, ids: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 [n, C, H, W] (+ aux [n, C]) of ``ids`` from experiment ``name`` (sorted mmap reads)."""
        folds = self.experiments[name]
        pos = np.array([self._where[name][i] for i in ids], dtype=np.int64).reshape(-1, 2)
        out = np.empty((len(ids),) + self.shape, dtype=np.uint8)
        aux = np.empty((len(ids), self.shape[0]), dtype=np.uint8) if self.has_aux else None
        for fi in np.unique(pos[:, 0]):
            sel = np.flatnonzero(pos[:, 0] == fi)
            rows = pos[sel, 1]
            order = np.argsort(rows)
            out[sel[order]] = folds[fi].probs[rows[order]]
            if aux is not None:
                aux[sel[order]] = folds[fi].aux[rows[order]]  # type: ignore[index]
        return out, aux

    def chunks(self, chunk_size: int) -> Iterator[Chunk]:
        """Chunks of at most ``chunk_size`` images, fold by fold (in the first experiment's order)."""
        chunk_size = max(1, int(chunk_size))
        for f in self.experiments[self.names[0]]:
            for start in range(0, len(f.ids), chunk_size):
                ids = list(f.ids[start : start + chunk_size])
                if len(self.names) == 1:
                    q = np.ascontiguousarray(f.probs[start : start + len(ids)])
                    aux = None if f.aux is None else np.asarray(f.aux[start : start + len(ids)])
                else:
                    q, aux = self.take(ids)
                yield Chunk(ids, f.fold, q, aux)

    def take(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 [n, C, H, W] (+ aux [n, C] | None) of any ``ids``, averaged over the experiments as in ``chunks``
        (weighted by ``weights``)."""
        if len(self.names) == 1:
            return self._gather(self.names[0], ids)
        acc = np.zeros((len(ids),) + self.shape, dtype=np.float32)
        aux_acc = np.zeros((len(ids), self.shape[0]), dtype=np.float32) if self.has_aux else None
        for name in self.names:
            part, part_aux = self._gather(name, ids)
            w = np.float32(self.weights[name])
            acc += part if w == 1 else w * part
            if aux_acc is not None:
                aux_acc += part_aux if w == 1 else w * part_aux  # type: ignore[operator]
        total = np.float32(sum(self.weights.values()))
        q = np.rint(acc / total).astype(np.uint8)
        aux = None if aux_acc is None else np.rint(aux_acc / total).astype(np.uint8)
        return q, aux

    def slides(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tile OOF: (group int64 [n] of each of ``ids`` into slides [G], slides object [G], slide_fold int64 [G]
        each slide's position in ``folds``); a slide whose tiles lie in two folds raises."""
        group, slides = slide_groups(self.ids)
        base = self.experiments[self.names[0]]  # self.ids: these folds' ids in order
        fold = pd.Series(np.repeat(np.arange(len(base)), [len(f.ids) for f in base])).groupby(group)
        split = fold.nunique()
        if (split > 1).any():
            slide = slides[int(split.index[split.to_numpy() > 1][0])]
            raise ValueError(f"OOF tiles of slide {slide!r} lie in more than one fold; a slide is one fold's unit")
        return group, slides, fold.first().to_numpy().astype(np.int64)

    def fold_positions(self) -> dict[str, int]:
        """{image id: position of its fold in ``folds``} (the first experiment's folds)."""
        return {i: k for k, f in enumerate(self.experiments[self.names[0]]) for i in f.ids}

    def member_chunks(self, chunk_size: int) -> Iterator[tuple[Chunk, np.ndarray, np.ndarray | None]]:
        """Like ``chunks`` without the mean: (chunk of the first experiment, q uint8 [M, n, C, H, W] of every
        experiment in ``names`` order, aux uint8 [M, n, C] | None)."""
        chunk_size = max(1, int(chunk_size))
        for f in self.experiments[self.names[0]]:
            for start in range(0, len(f.ids), chunk_size):
                ids = list(f.ids[start : start + chunk_size])
                parts = [self._gather(name, ids) for name in self.names]
                aux = np.stack([a for _, a in parts]) if self.has_aux else None  # type: ignore[misc]
                yield Chunk(ids, f.fold, parts[0][0], parts[0][1]), np.stack([q for q, _ in parts]), aux

    def fold_of(self, name: str) -> dict[str, int]:
        """{image id: fold} of experiment ``name``'s OOF stores."""
        return {i: f.fold for f in self.experiments[name] for i in f.ids}


def check_against_folds(cfg: Config, oof: OOFSet) -> None:
    """Refuse OOF predictions that do not match ``folds.csv`` (the folds the CV estimate is computed on).

    Every OOF image of the first experiment's ``fold<K>`` must be in fold K of ``folds.csv``, and every image
    of fold K must have an OOF row (with ``data.on_bad_image=skip`` missing ones are only logged: training
    dropped them as unreadable). A ``folds.csv`` that does not exist skips the check with a warning.
    """
    if not cfg.folds_path.is_file():
        log.warning("%s not found: cannot check the OOF folds against it", cfg.folds_path)
        return
    folds = read_folds(cfg)
    fold_of = pd.Series(folds.fold.to_numpy(), index=folds.image_id)
    name = oof.names[0]
    for f in oof.experiments[name]:
        where = RunLayout(Path(cfg.runs_dir), name).oof(f.fold).ids
        # tile ids <slide>@<y0>_<x0> (kseg.tiling): the slide is the fold unit
        ids = pd.Series(slide_ids(f.ids) if cfg.tile.enabled else f.ids, dtype=object)
        got = ids.map(fold_of)
        wrong = got.isna() | (got != f.fold)
        if wrong.any():
            row = int(np.flatnonzero(wrong.to_numpy())[0])
            has = "is not in" if pd.isna(got.iloc[row]) else f"is in fold {int(got.iloc[row])} of"
            raise ValueError(
                f"{where}: row {row + 2}: OOF image {ids.iloc[row]!r} of fold {f.fold} {has} "
                f"{cfg.folds_path}: these OOF predictions come from other folds; retrain "
                f"(`kseg train --fold all`) or restore the folds.csv they were trained on"
            )
        missing = sorted(set(folds.image_id[folds.fold == f.fold]) - set(ids))
        if missing:
            msg = (
                f"{where}: fold {f.fold} of {cfg.folds_path} has {len(missing)} image(s) without an OOF "
                f"prediction, e.g. {missing[0]!r}"
            )
            if cfg.data.on_bad_image != "skip":
                raise ValueError(msg + f"; retrain the fold (`kseg train --fold {f.fold}`) with this folds.csv")
            log.warning("%s (dropped as unreadable under data.on_bad_image=skip)", msg)


def load_oof(cfg: Config, runs: list[str], weights: Mapping[str, float] | None = None) -> OOFSet:
    """The OOF set of experiments ``runs`` (names under ``cfg.runs_dir``), weighted by ``weights`` (default equal)."""
    found = {name: find_folds(RunLayout(Path(cfg.runs_dir), name).root, name, cfg.tune.oof_tta) for name in runs}
    return OOFSet(found, weights)
