"""One training epoch (``train_epoch``, over a ``Trainer``) and one validation pass (``validate``)."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from kseg.competition import CompetitionSpec
from kseg.config import Config
from kseg.losses import SegLoss
from kseg.metrics import Metric, case_groups, mask_stats
from kseg.models import probs_from_output
from kseg.optim import LrSchedule
from kseg.tiling import box_masks, slide_groups
from kseg.train import dist as D
from kseg.train.dist import DistInfo, all_true
from kseg.train.oof_store import OofWriter, to_uint8
from kseg.train.runtime import Runtime, amp_step
from kseg.train.tracking import display_image, label_map
from kseg.train.trainer import Trainer
from kseg.train.truth import TruthTable, restore_batch

__all__ = [
    "EpochCounts",
    "Runtime",
    "ValOutput",
    "amp_step",
    "train_epoch",
    "train_one_epoch",
    "reduce_val",
    "validate",
    "volume_score",
]

log = logging.getLogger(__name__)


def _group_sizes(n_batches: int, accumulate: int) -> list[int]:
    """Micro-batches in the accumulation group of each batch (the last group may be shorter)."""
    sizes = []
    for start in range(0, n_batches, accumulate):
        g = min(accumulate, n_batches - start)
        sizes += [g] * g
    return sizes


@dataclass
class EpochCounts:
    """One training epoch's loss sum over its images and what it left out (``report`` logs it at the end)."""

    total: float = 0.0
    count: int = 0
    nonfinite: int = 0  # batches with a non-finite loss (train.skip_nonfinite)
    amp_skipped: int = 0  # optimizer steps the GradScaler skipped
    bad_images: int = 0  # unreadable images left out of their batch (data.on_bad_image=skip)
    empty_batches: int = 0  # batches without a readable image

    def report(self, desc: str, n_batches: int, accumulate: int) -> None:
        """Warn about the batches, steps and images the epoch ``desc`` skipped."""
        if self.nonfinite:
            log.warning(
                "%s: skipped %d of %d batches with a non-finite loss (train.skip_nonfinite=true)",
                desc,
                self.nonfinite,
                n_batches,
            )
        if self.amp_skipped:
            log.warning(
                "%s: GradScaler skipped %d of %d optimizer steps (inf/NaN gradients under AMP)",
                desc,
                self.amp_skipped,
                math.ceil(n_batches / accumulate),
            )
        if self.bad_images or self.empty_batches:
            log.warning(
                "%s: %d unreadable image(s) left out of their batches, %d batch(es) with no readable image skipped "
                "(data.on_bad_image=skip)",
                desc,
                self.bad_images,
                self.empty_batches,
            )


def train_epoch(trainer: Trainer, net: nn.Module, loader: Iterable[Any], desc: str) -> tuple[float, int]:
    """Train ``net`` (``trainer.model`` or its DDP wrapper) over ``loader`` once; returns (loss sum, images).

    Gradients accumulate over ``train.accumulate`` batches (each loss divided by its group's size), then one
    ``trainer.step()``. A non-finite loss raises FloatingPointError naming the batch, or with
    ``train.skip_nonfinite`` drops its group's step.
    """
    net.train()
    accumulate = max(1, trainer.cfg.train.accumulate)
    n_batches = len(loader)  # type: ignore[arg-type]
    groups = _group_sizes(n_batches, accumulate)
    counts = EpochCounts()
    skipped = has_grad = False
    trainer.optimizer.zero_grad(set_to_none=True)
    bar = tqdm(loader, desc=desc, leave=False, disable=not trainer.rt.progress, dynamic_ncols=True)
    for i, batch in enumerate(bar):
        last_of_group = i + 1 == n_batches or (i + 1) % accumulate == 0
        if _present(batch, trainer, counts):
            done = _backward(trainer, net, batch, groups[i], sync=last_of_group, where=f"{desc} batch {i}")
            if done is None:
                skipped, counts.nonfinite = True, counts.nonfinite + 1
            else:
                counts.total, counts.count, has_grad = counts.total + done[0], counts.count + done[1], True
        if last_of_group:
            if trainer.step(apply=has_grad and not skipped):
                counts.amp_skipped += 1
                if counts.amp_skipped == 1:
                    log.warning(
                        "%s batch %d: AMP found inf/NaN gradients; GradScaler skipped the optimizer step and lowered "
                        "its scale to %g",
                        desc,
                        i,
                        trainer.scaler.get_scale(),
                    )
            skipped = has_grad = False
        if counts.count and trainer.rt.progress:
            bar.set_postfix(loss=f"{counts.total / counts.count:.4f}", refresh=False)
    counts.report(desc, n_batches, accumulate)
    return counts.total, counts.count


def _present(batch: dict[str, Any] | None, trainer: Trainer, counts: EpochCounts) -> bool:
    """Whether to train on ``batch``. With ``data.on_bad_image=skip``: counts its unreadable images, and every rank
    skips a batch that has no readable image (``None``) on any rank."""
    present = batch is not None
    if trainer.cfg.data.on_bad_image == "skip":
        counts.bad_images += int(batch.get("skipped", 0)) if batch is not None else 0
        counts.empty_batches += 0 if present else 1
        present = all_true(present, trainer.info)
    return present


def _backward(
    trainer: Trainer, net: nn.Module, batch: dict[str, Any], group: int, sync: bool, where: str
) -> tuple[float, int] | None:
    """Forward + backward of one batch (loss / ``group``, scaled by the GradScaler): (loss x images, images), or
    None when the loss is non-finite on some rank and ``train.skip_nonfinite`` drops it (else FloatingPointError).
    ``sync=False`` keeps DDP from all-reducing these gradients (not the last batch of its accumulation group)."""
    rt, info = trainer.rt, trainer.info
    x, y = rt.images(batch), rt.masks(batch)
    defer = info.distributed and not sync and hasattr(net, "no_sync")
    with net.no_sync() if defer else contextlib.nullcontext():  # type: ignore[operator]
        with rt.autocast():
            out = net(x)
        loss, _ = trainer.loss_fn(out, y)
        if all_true(bool(torch.isfinite(loss).item()), info):
            trainer.scaler.scale(loss / group).backward()
            return float(loss.detach()) * len(x), len(x)
    if not trainer.cfg.train.skip_nonfinite:
        raise FloatingPointError(
            f"{where}: loss is {loss.item()} (images {list(batch['id'])[:4]}...); "
            "lower optim.lr, set train.clip_grad, or set train.skip_nonfinite=true"
        )
    log.warning("%s: non-finite loss %s, skipping its optimizer step", where, loss.item())
    return None


def train_one_epoch(
    model: nn.Module,
    ema_target: nn.Module,
    loader: Iterable[Any],
    loss_fn: SegLoss,
    optimizer: torch.optim.Optimizer,
    schedule: LrSchedule,
    scaler: torch.amp.GradScaler,
    ema: torch.optim.swa_utils.AveragedModel | None,
    cfg: Config,
    rt: Runtime,
    info: DistInfo,
    desc: str,
) -> tuple[float, int]:
    """``train_epoch`` over loose parts: ``model`` runs forward, ``ema_target`` is what the EMA averages."""
    trainer = Trainer(cfg, ema_target, optimizer, schedule, scaler, ema, loss_fn, rt, info)
    return train_epoch(trainer, model, loader, desc)


@dataclass
class ValOutput:
    """One rank's validation sums and per-item stats (rows = this rank's positions in the fold's val ids)."""

    loss_sum: float = 0.0
    count: int = 0
    positions: list[int] = field(default_factory=list)
    inter: list[np.ndarray] = field(default_factory=list)
    pred_area: list[np.ndarray] = field(default_factory=list)
    true_area: list[np.ndarray] = field(default_factory=list)
    images: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    aux: list[np.ndarray] = field(default_factory=list)  # uint8 [b, C] aux-head probabilities per batch
    # volume metrics only: per image (np.packbits of pred bool [C, H, W], of truth, (C, H, W)), positions order
    volume: list[tuple[np.ndarray, np.ndarray, tuple[int, ...]]] = field(default_factory=list)

    def aux_array(self) -> np.ndarray | None:
        """uint8 [n, C] aux-head probabilities of this rank's images in ``positions`` order, None without aux."""
        return np.concatenate(self.aux) if self.aux else None

    def add_masks(self, pred: np.ndarray, true: np.ndarray, keep: bool) -> None:
        """Book a batch's binary masks [b, C, H, W]: per-item statistics, and with ``keep`` the packed masks."""
        inter, pred_area, true_area = mask_stats(pred, true)
        self.inter.append(inter)
        self.pred_area.append(pred_area)
        self.true_area.append(true_area)
        if keep:
            self.volume += [(np.packbits(p), np.packbits(t), p.shape) for p, t in zip(pred, true, strict=True)]

    def stats(self) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
        """(positions, inter, pred_area, true_area) with stats arrays [n, C]."""

        def cat(a: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(a) if a else np.zeros((0, 0), dtype=np.int64)

        return self.positions, cat(self.inter), cat(self.pred_area), cat(self.true_area)


@torch.no_grad()
def validate(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    positions: list[int],
    loss_fn: SegLoss,
    truth: TruthTable,
    writer: OofWriter | None,
    cfg: Config,
    rt: Runtime,
    desc: str,
    n_images: int = 0,
) -> ValOutput:
    """Val loss at model size; metric stats and OOF uint8 probabilities at the submission size."""
    model.eval()
    res = ValOutput()
    thr = cfg.train.val_threshold
    mode = cfg.competition.mode
    volumes = cfg.competition.scorer.kind == "volume"  # dice_hausdorff: keep the masks for the 3D part
    offset = 0
    for batch in tqdm(loader, desc=desc, leave=False, disable=not rt.progress, dynamic_ncols=True):
        x = rt.images(batch)
        y = rt.masks(batch)
        with rt.autocast():
            out = model(x)
        loss, _ = loss_fn(out, y)
        b = len(x)
        if math.isfinite(float(loss)):
            res.loss_sum += float(loss) * b
            res.count += b
        probs, aux = probs_from_output(out, mode)
        if aux is not None:
            res.aux.append(to_uint8(aux))
        ids = list(batch["id"])
        natives = [tuple(int(v) for v in s) for s in batch["size"].tolist()]
        full, size = restore_batch(probs, natives, cfg, ids)
        if writer is not None:
            if tuple(writer.shape[2:]) != size:
                raise ValueError(f"image {ids[0]}: submission size {size} != OOF size {writer.shape[2:]}")
            writer.write(offset, to_uint8(full))
        pred = (full > thr).cpu().numpy()
        true = truth.masks(ids, size, natives)
        boxes = truth.boxes(ids)
        if boxes is not None:  # tiles: a slide pixel counts once (its window's own box), none past the edge
            owned = box_masks(boxes, size)[:, None]
            pred, true = pred & owned, true & owned
        res.add_masks(pred, true, volumes)
        res.positions += positions[offset : offset + b]
        if len(res.images) < n_images:
            small = (probs > thr).cpu().numpy()
            for j in range(min(b, n_images - len(res.images))):
                res.images.append(
                    (
                        display_image(x[j].float().cpu().numpy()),
                        label_map(small[j]),
                        label_map(batch["mask"][j].numpy() > 0.5),
                    )
                )
        offset += b
    return res


def volume_score(
    metric: Metric, keys: tuple[np.ndarray, np.ndarray], packed: list[tuple[np.ndarray, np.ndarray, tuple[int, ...]]]
) -> float:
    """A ``volume`` metric of packed validation masks (``ValOutput.volume``) with their (case, slice) ``keys`` [n].

    Each case's slices are unpacked and stacked in numeric slice order; its slices must share one size.
    """
    stats = None
    for name, idx in case_groups(*keys):
        shapes = {packed[i][2] for i in idx}
        if len(shapes) != 1:
            raise ValueError(f"case {name}: its slices have different sizes {sorted(shapes)}; a volume needs one")
        (shape,) = shapes
        count = int(np.prod(shape))

        def unpack(k: int, idx: np.ndarray = idx, shape: tuple[int, ...] = shape, count: int = count) -> np.ndarray:
            return np.stack([np.unpackbits(packed[i][k], count=count).reshape(shape).astype(bool) for i in idx])

        part = metric.case_stats(unpack(0), unpack(1))
        stats = part if stats is None else stats + part
    if stats is None:
        raise ValueError("no validation images to score")
    return metric.class_mean(metric.finalize(stats))


def reduce_val(
    res: ValOutput, val_ids: list[str], spec: CompetitionSpec, info: DistInfo, tiled: bool = False
) -> tuple[float, float]:
    """(val loss, competition metric ``spec.scorer`` over every val image x class), identical on every rank.

    A ``volume`` metric (dice_hausdorff) scores the gathered masks case by case (``ValOutput.volume``).
    ``tiled`` (``tile.size > 0``, ``val_ids`` are tile ids): each slide's tiles are summed into one item, so an
    ``item`` metric is the mean over slides, as the leaderboard scores whole slides (``kseg.tiling.slide_groups``).
    """
    n_val, metric = len(val_ids), spec.scorer
    loss_sum, count = D.all_reduce_sum([res.loss_sum, float(res.count)], info)
    parts = D.all_gather_objects(res.stats(), info)
    pos = np.concatenate([np.asarray(p[0], dtype=np.int64) for p in parts])
    if len(pos) != n_val or len(np.unique(pos)) != n_val:
        raise RuntimeError(f"validation covered {len(np.unique(pos))} of {n_val} images")
    if metric.kind == "volume":
        packed = [m for part in D.all_gather_objects(res.volume, info) for m in part]
        score = volume_score(metric, spec.volume_keys([val_ids[i] for i in pos]), packed)
    else:
        stats = [np.concatenate([p[k] for p in parts if len(p[0])]) for k in (1, 2, 3)]
        groups = slide_groups([val_ids[i] for i in pos])[0] if tiled else None
        score = metric.score_stats(*stats, groups=groups)
    return (loss_sum / count if count else math.nan), score
