"""One training epoch and one validation pass (pure-ish functions over model, loader and optimizer)."""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from kseg.config import Config
from kseg.losses import SegLoss
from kseg.metrics import mask_stats
from kseg.models import probs_from_output
from kseg.optim import LrSchedule
from kseg.train.dist import DistInfo, all_true
from kseg.train.oof_store import OofWriter, to_uint8
from kseg.train.tracking import display_image, label_map
from kseg.train.truth import TruthTable, restore_batch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    """How tensors are run: device, AMP (CUDA only), channels_last (CUDA only), progress bars."""

    device: torch.device
    amp: bool = False
    channels_last: bool = False
    progress: bool = True

    @classmethod
    def from_config(cls, cfg: Config, info: DistInfo) -> "Runtime":
        cuda = info.device.type == "cuda"
        return cls(info.device, amp=cfg.train.amp and cuda, channels_last=cfg.train.channels_last and cuda,
                   progress=info.is_main)  # fmt: skip

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp)

    def masks(self, batch: dict[str, Any]) -> torch.Tensor:
        """Target masks float32 [N, C, H, W] on the device (the loader ships them as uint8 0/1)."""
        return batch["mask"].to(self.device, non_blocking=True).float()

    def images(self, batch: dict[str, Any]) -> torch.Tensor:
        x = batch["image"].to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def _group_sizes(n_batches: int, accumulate: int) -> list[int]:
    """Micro-batches in the accumulation group of each batch (the last group may be shorter)."""
    sizes = []
    for start in range(0, n_batches, accumulate):
        g = min(accumulate, n_batches - start)
        sizes += [g] * g
    return sizes


def train_one_epoch(
    model: nn.Module,
    ema_target: nn.Module,
    loader: torch.utils.data.DataLoader,
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
    """Train over ``loader`` once with accumulation, clipping, AMP and EMA; returns (loss sum, images)."""
    model.train()
    t = cfg.train
    n_batches = len(loader)
    groups = _group_sizes(n_batches, max(1, t.accumulate))
    params = [p for p in model.parameters() if p.requires_grad]
    total, count, skipped, has_grad = 0.0, 0, False, False
    nonfinite = amp_skipped = bad_images = empty_batches = 0
    optimizer.zero_grad(set_to_none=True)
    bar = tqdm(loader, desc=desc, leave=False, disable=not rt.progress, dynamic_ncols=True)
    for i, batch in enumerate(bar):
        last_of_group = i + 1 == n_batches or (i + 1) % max(1, t.accumulate) == 0
        present = batch is not None
        if cfg.data.on_bad_image == "skip":  # unreadable images are dropped from their batch (None: all of them)
            bad_images += int(batch.get("skipped", 0)) if present else 0
            empty_batches += 0 if present else 1
            present = all_true(present, info)  # every rank skips a batch any rank lacks
        if present:
            x = rt.images(batch)
            y = rt.masks(batch)
            sync = contextlib.nullcontext()
            if info.distributed and not last_of_group and hasattr(model, "no_sync"):
                sync = model.no_sync()
            with sync:
                with rt.autocast():
                    out = model(x)
                loss, _ = loss_fn(out, y)
                finite = all_true(bool(torch.isfinite(loss).item()), info)
                if finite:
                    scaler.scale(loss / groups[i]).backward()
                    total += float(loss.detach()) * len(x)
                    count += len(x)
                    has_grad = True
                elif t.skip_nonfinite:
                    log.warning("%s batch %d: non-finite loss %s, skipping its optimizer step", desc, i, loss.item())
                    skipped = True
                    nonfinite += 1
                else:
                    raise FloatingPointError(
                        f"{desc} batch {i}: loss is {loss.item()} (images {list(batch['id'])[:4]}...); "
                        "lower optim.lr, set train.clip_grad, or set train.skip_nonfinite=true"
                    )
        if last_of_group:
            if not skipped and has_grad:
                if t.clip_grad > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(params, t.clip_grad)
                if amp_step(scaler, optimizer):
                    amp_skipped += 1
                    if amp_skipped == 1:
                        log.warning("%s batch %d: AMP found inf/NaN gradients; GradScaler skipped the optimizer step "
                                    "and lowered its scale to %g", desc, i, scaler.get_scale())  # fmt: skip
                if ema is not None:
                    ema.update_parameters(ema_target)
            optimizer.zero_grad(set_to_none=True)
            schedule.step_batch()
            skipped = has_grad = False
        if count and rt.progress:
            bar.set_postfix(loss=f"{total / count:.4f}", refresh=False)
    if nonfinite:
        log.warning("%s: skipped %d of %d batches with a non-finite loss (train.skip_nonfinite=true)", desc, nonfinite,
                    n_batches)  # fmt: skip
    if amp_skipped:
        log.warning("%s: GradScaler skipped %d of %d optimizer steps (inf/NaN gradients under AMP)", desc, amp_skipped,
                    math.ceil(n_batches / max(1, t.accumulate)))  # fmt: skip
    if bad_images or empty_batches:
        log.warning("%s: %d unreadable image(s) left out of their batches, %d batch(es) with no readable image "
                    "skipped (data.on_bad_image=skip)", desc, bad_images, empty_batches)  # fmt: skip
    return total, count


def amp_step(scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer) -> bool:
    """``scaler.step`` + ``scaler.update``; True when the scaler silently skipped the step (inf/NaN gradients).

    A skipped step shows as a lowered scale; a disabled scaler (CPU, no AMP) never skips.
    """
    if not scaler.is_enabled():
        scaler.step(optimizer)
        scaler.update()
        return False
    before = scaler.get_scale()
    scaler.step(optimizer)
    scaler.update()
    return scaler.get_scale() < before


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

    def aux_array(self) -> np.ndarray | None:
        """uint8 [n, C] aux-head probabilities of this rank's images in ``positions`` order, None without aux."""
        return np.concatenate(self.aux) if self.aux else None

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
        inter, pa, ta = mask_stats(pred, truth.masks(ids, size, natives))
        res.inter.append(inter)
        res.pred_area.append(pa)
        res.true_area.append(ta)
        res.positions += positions[offset : offset + b]
        if len(res.images) < n_images:
            small = (probs > thr).cpu().numpy()
            for j in range(min(b, n_images - len(res.images))):
                res.images.append((display_image(x[j].float().cpu().numpy()), label_map(small[j]),
                                   label_map(batch["mask"][j].numpy() > 0.5)))  # fmt: skip
        offset += b
    return res
