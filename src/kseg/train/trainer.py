"""The training state of one fold and the optimizer step: ``Trainer``.

State: model, optimizer, schedule, GradScaler, EMA, ``Progress`` (finished epochs, best score, early-stopping
counter, metric history) and the random state (python / numpy / torch / CUDA, the train loader's generator).
``state_dict()`` / ``load_state_dict()`` describe it once: ``save`` writes ``last.pt`` with the first and
``resume`` reads it back with the second, so ``--resume`` continues bit for bit. ``step()`` is one optimizer
step (unscale + clip, GradScaler step, EMA update, schedule); ``kseg.train.loop.train_epoch`` calls it once per
accumulation group.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from kseg.config import Config
from kseg.models import save_checkpoint, set_encoder_trainable
from kseg.optim import LrSchedule, build_optimizer, build_scheduler
from kseg.train.dist import DistInfo
from kseg.train.runtime import Runtime, amp_step
from kseg.train.seed import rng_state, set_rng_state
from kseg.train.state import Progress, check_resumable, load_last

log = logging.getLogger(__name__)


@dataclass
class Trainer:
    """Everything a training step changes. ``model`` is the bare model (what EMA averages and ``last.pt`` holds);
    ``net(epoch)`` is the module to run forward (DDP-wrapped under torchrun)."""

    cfg: Config
    model: nn.Module
    optimizer: Optimizer
    schedule: LrSchedule
    scaler: torch.amp.GradScaler
    ema: AveragedModel | None
    loss_fn: nn.Module
    rt: Runtime
    info: DistInfo = field(default_factory=DistInfo)
    generator: torch.Generator | None = None  # the train loader's shuffling generator
    progress: Progress = field(default_factory=Progress)
    _net: nn.Module | None = field(default=None, repr=False)
    _frozen: bool | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls,
        cfg: Config,
        model: nn.Module,
        loss_fn: nn.Module,
        steps_per_epoch: int,
        rt: Runtime,
        info: DistInfo | None = None,
        generator: torch.Generator | None = None,
    ) -> Trainer:
        """Optimizer over ``model``'s parameter groups, ``sched`` over ``steps_per_epoch`` optimizer steps an epoch,
        a GradScaler (enabled with AMP) and, with ``train.ema``, an EMA copy of ``model`` (buffers averaged too)."""
        optimizer = build_optimizer(cfg, model)
        schedule = build_scheduler(cfg, optimizer, max(1, steps_per_epoch))
        scaler = torch.amp.GradScaler("cuda", enabled=rt.needs_scaler)  # float16 AMP only
        ema = None
        if cfg.train.ema:
            ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.train.ema_decay), use_buffers=True)
        return cls(cfg, model, optimizer, schedule, scaler, ema, loss_fn, rt, info or DistInfo(), generator)

    @property
    def eval_model(self) -> nn.Module:
        """The weights validation scores and best.pt keeps: the EMA ones with ``train.ema``."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def lr(self) -> float:
        """The learning rate of the next optimizer step."""
        return float(self.optimizer.param_groups[0]["lr"])

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """The training state as tensors and plain types (``torch.load(weights_only=True)`` reads it back).

        Keys: ``state_dict`` (model), ``optimizer``, ``scheduler``, ``scaler``, ``ema`` (None without EMA),
        ``progress``, ``rng`` (python / numpy / torch / CUDA) and ``generator`` (None without one). The tensors are
        the live ones: save or copy them before training on.
        """
        return {
            "state_dict": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "progress": self.progress.to_dict(),
            "rng": rng_state(),
            "generator": self.generator.get_state() if self.generator is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict()``, the global random state included (ValueError: no EMA weights for an EMA run)."""
        if self.ema is not None and state.get("ema") is None:
            raise ValueError("train.ema is on but the checkpoint has no EMA weights")
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        if state["scaler"]:  # a disabled GradScaler (CPU) saves {} and refuses to load it
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.progress = Progress.from_dict(state["progress"])
        if self.generator is not None and state.get("generator") is not None:
            self.generator.set_state(state["generator"])
        set_rng_state(state["rng"])

    def save(self, path: Path) -> None:
        """Write ``state_dict()`` + config and kseg version (``save_checkpoint``), epoch and best score to ``path``."""
        p = self.progress
        save_checkpoint(path, self.model, self.cfg, **self.state_dict(), epoch=p.epoch, score=p.best_score)

    def resume(self, path: Path) -> None:
        """Continue from a ``save``d ``path`` (``load_last``, then ``check_resumable`` against this run's config)."""
        ckpt = load_last(path, map_location=self.rt.device)
        check_resumable(ckpt, self.cfg, path)
        try:
            self.load_state_dict(ckpt)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e

    # ------------------------------------------------------------------ steps

    def net(self, epoch: int) -> nn.Module:
        """The module to train in 0-based ``epoch``: the encoder frozen for ``model.freeze_encoder_epochs`` epochs;
        DDP (re)wrapped when that changes, since DDP registers the trainable parameters when it wraps."""
        frozen = epoch < self.cfg.model.freeze_encoder_epochs
        if frozen != self._frozen or self._net is None:  # the first epoch too
            set_encoder_trainable(self.model, not frozen)
            self._net, self._frozen = wrap_ddp(self.model, self.cfg, self.rt, self.info), frozen
        return self._net

    def step(self, apply: bool = True) -> bool:
        """End of an accumulation group; True when the GradScaler skipped the step (inf/NaN gradients under AMP).

        With ``apply`` (gradients to use): unscale + clip to ``train.clip_grad``, GradScaler step, EMA update.
        Always: zero the gradients and advance the schedule (a skipped step keeps it on the batch count).
        """
        skipped = False
        if apply:
            if self.cfg.train.clip_grad > 0:
                self.scaler.unscale_(self.optimizer)
                params = [p for p in self.model.parameters() if p.requires_grad]
                torch.nn.utils.clip_grad_norm_(params, self.cfg.train.clip_grad)
            skipped = amp_step(self.scaler, self.optimizer)
            if self.ema is not None:
                self.ema.update_parameters(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        self.schedule.step_batch()
        return skipped


def unused_parameters(model: nn.Module, cfg: Config, rt: Runtime) -> list[nn.Parameter]:
    """Trainable parameters that get no gradient (e.g. ResNet layer4 with ``encoder_depth=3``).

    Found with one eval-mode forward/backward (no BN statistics or RNG touched).
    """
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, *cfg.data.image_size, device=rt.device)
    with rt.autocast():
        out = model(x)
    sum(v.float().sum() for v in out.values()).backward()
    unused = [p for p in model.parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return unused


def wrap_ddp(model: nn.Module, cfg: Config, rt: Runtime, info: DistInfo) -> nn.Module:
    """DDP around ``model`` (identity for one process); parameters without gradients are frozen first."""
    if not info.distributed:
        return model
    unused = unused_parameters(model, cfg, rt)
    if unused:
        log.info("DDP: freezing %d parameter tensors that never get a gradient", len(unused))
        for p in unused:
            p.requires_grad_(False)
    ids = [info.device.index] if info.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)
