"""Checkpoint averaging (``train.swa=top|last``, ``train.swa_k``): the mean weights of a fold's top-k or last-k epochs.

While a fold trains, ``keep_epoch`` writes ``fold<K>/epochs/epoch<E>.pt`` (the validated weights, EMA ones with
``train.ema``) of every epoch that may still be averaged (``Progress.swa_candidates``) and ``prune_epochs``
deletes the others once ``last.pt`` is written. After the last epoch ``average_fold``:

1. averages the candidates' weights uniformly (``torch.optim.swa_utils.AveragedModel``: a running mean of
   every parameter; buffers from the latest member);
2. recomputes the BatchNorm running statistics with one pass over the training images (``update_bn``:
   statistics reset, then a cumulative average over the batches, in train mode);
3. validates the average like an epoch and writes ``swa.pt``; the average becomes ``best.pt`` + ``oof.npy``
   only when its metric is at least the selected epoch's (``train.select``), a choice made on the held fold
   like ``train.select=best``'s;
4. logs both scores (log, tracker) and adds one row to ``metrics.csv`` (``swa_epochs`` lists the members,
   ``swa_kept`` says whether it replaced ``best.pt``).

``Progress.swa`` records the outcome in ``last.pt``: ``--resume`` after it skips the stage, a run killed during it
averages again from the epoch checkpoints (which a fresh run deletes).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

from kseg.atomic import torch_load
from kseg.config import Config
from kseg.layout import BEST, LAST, METRICS_CSV, SWA_CKPT
from kseg.models import save_checkpoint, validated_state_dict
from kseg.train import dist as D
from kseg.train.runtime import Runtime
from kseg.train.state import Progress, write_metrics_csv

if TYPE_CHECKING:
    from kseg.train.fit import FoldRun

log = logging.getLogger(__name__)


def keep_epoch(cfg: Config, fold: int, model: nn.Module, progress: Progress) -> Path | None:
    """Write the just-finished epoch's ``model`` weights to ``epochs/epoch<E>.pt`` when ``train.swa`` may average
    it (a best.pt-like checkpoint: ``load_checkpoint`` reads it); the path, None when not kept."""
    t = cfg.train
    if progress.epoch not in progress.swa_candidates(t.swa, t.swa_k):
        return None
    path = cfg.layout.epoch_checkpoint(fold, progress.epoch)
    path.parent.mkdir(parents=True, exist_ok=True)
    score = float(progress.history[-1]["val_metric"])
    save_checkpoint(path, model, cfg, epoch=progress.epoch, score=score, metric=cfg.competition.metric)
    return path


def prune_epochs(cfg: Config, fold: int, keep: Sequence[int]) -> None:
    """Delete the epoch checkpoints of ``fold`` other than those of the 1-based epochs ``keep`` ([] = all)."""
    folder = cfg.layout.epochs_dir(fold)
    if not folder.is_dir():
        return
    wanted = {cfg.layout.epoch_checkpoint(fold, e).name for e in keep}
    for path in folder.iterdir():
        if path.name not in wanted:
            path.unlink(missing_ok=True)
    if not any(folder.iterdir()):
        folder.rmdir()


def average_checkpoints(model: nn.Module, paths: Sequence[Path]) -> nn.Module:
    """A copy of ``model`` (its architecture and device) holding the uniform mean of the validated weights of the
    checkpoints ``paths`` (every parameter); buffers (BN statistics included) are the last checkpoint's."""
    if not paths:
        raise ValueError("average_checkpoints: no checkpoints to average")
    device = next(model.parameters()).device
    scratch = copy.deepcopy(model)

    def load(path: Path) -> None:
        scratch.load_state_dict(validated_state_dict(torch_load(path, map_location=device), path)[0])

    load(paths[-1])
    averaged = AveragedModel(scratch, device=device)  # its own deep copy: buffers of the last member
    for path in paths:
        load(path)
        averaged.update_parameters(scratch)
    return averaged.module


def training_images(loader: Iterable[Any], rt: Runtime) -> Iterator[torch.Tensor]:
    """The image tensors [B, 3, h, w] of a training loader's batches on ``rt``'s device (skipped batches left out)."""
    for batch in loader:
        if batch is not None:
            yield rt.images(batch)


def recompute_bn(model: nn.Module, loader: Iterable[Any], rt: Runtime) -> None:
    """BatchNorm running statistics of ``model`` recomputed over ``loader`` (``update_bn``: one pass, in train mode,
    each statistic the plain mean over batches); ``model`` is left in eval mode."""
    with rt.autocast():
        update_bn(training_images(loader, rt), model)
    model.eval()


def swa_row(progress: Progress, members: Sequence[int], val_loss: float, score: float, kept: bool, seconds: float):
    """The ``metrics.csv`` row of the averaged weights (after the epoch rows)."""
    return {
        "epoch": progress.epoch,
        "lr": math.nan,
        "train_loss": math.nan,
        "val_loss": val_loss,
        "val_metric": score,
        "seconds": round(seconds, 3),
        "swa_epochs": " ".join(str(e) for e in members),
        "swa_kept": kept,
    }


def average_fold(run: FoldRun) -> dict[str, Any] | None:
    """``train.swa`` on a trained fold (see the module docstring); ``run.progress.swa`` is the outcome, also
    returned (None when the fold holds fewer than two epochs to average: nothing is written)."""
    cfg, p, fold, t = run.cfg, run.progress, run.fold, run.cfg.train
    if p.swa is not None:
        log.info("fold %d: checkpoint average already done (%s)", fold, p.swa)
        return p.swa
    members = p.swa_candidates(t.swa, t.swa_k)
    if len(members) < 2:
        log.warning("fold %d: train.swa=%s needs two epochs to average, the fold has %s", fold, t.swa, members)
        return None
    start = time.time()
    paths = [cfg.layout.epoch_checkpoint(fold, e) for e in members]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"fold {fold}: train.swa: epoch checkpoint {missing[0]} not found (retrain the fold)")
    model = average_checkpoints(run.trainer.eval_model, paths)
    run.data.train_sampler.set_epoch(p.epoch)
    recompute_bn(model, run.data.train_loader, run.trainer.rt)
    reference = p.selected(t.select)[0]
    val_loss, score, kept, res = run.validate_model(model, "swa", lambda s: math.isfinite(s) and s >= reference)
    p.swa = {"epochs": members, "mode": t.swa, "score": score, "reference": reference, "kept": kept}
    if run.info.is_main:
        _write(run, model, swa_row(p, members, val_loss, score, kept, time.time() - start))
    D.barrier(run.info)
    return p.swa


def _write(run: FoldRun, model: nn.Module, row: dict[str, Any]) -> None:
    """Rank 0: ``swa.pt`` (and ``best.pt`` when kept), ``metrics.csv`` with the SWA row, ``last.pt``, tracker, log."""
    cfg, p, fold_dir, metric = run.cfg, run.progress, run.fold_dir, run.cfg.competition.metric
    swa = p.swa or {}
    info = {"epoch": p.epoch, "score": swa["score"], "metric": metric, "select": cfg.train.select, "swa": swa}
    save_checkpoint(fold_dir / SWA_CKPT, model, cfg, **info)
    if swa["kept"]:
        save_checkpoint(fold_dir / BEST, model, cfg, **info)
    write_metrics_csv(fold_dir / METRICS_CSV, [*p.history, row])
    run.trainer.save(fold_dir / LAST)
    run.tracker.log({f"swa/val_{metric}": swa["score"], f"swa/selected_{metric}": swa["reference"]}, step=p.epoch)
    run.tracker.summary({"swa_val_metric": swa["score"], "swa_kept": swa["kept"]})
    log.info(
        "fold %d: average of epochs %s (train.swa=%s): val_%s %.4f vs %.4f of the selected epoch -> %s",
        run.fold,
        ",".join(map(str, swa["epochs"])),
        swa["mode"],
        metric,
        swa["score"],
        swa["reference"],
        "kept as best.pt" if swa["kept"] else "not kept (swa.pt only)",
    )
