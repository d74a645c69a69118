"""Optimizers and learning-rate schedules from ``cfg.optim`` / ``cfg.sched`` through registries.

``build_optimizer(cfg, model)`` puts biases and normalisation parameters (every 1-D parameter) in a group
without weight decay, with timm's ``param_groups_weight_decay`` (``optim.no_decay_norm_bias``, on by default).

Every schedule is wrapped in ``LrSchedule`` so the loop calls ``step_batch()`` after each optimizer step and
``step_epoch(metric)`` after validation, whatever the schedule's natural interval:

- ``cosine``: linear warmup over ``sched.warmup_epochs`` then cosine to ``min_lr`` (per optimizer step).
- ``onecycle``: torch ``OneCycleLR`` (warmup_epochs sets ``pct_start``), per step.
- ``step``: warmup then x ``gamma`` every ``step_size`` epochs (per step, so warmup can be fractional).
- ``plateau``: ``ReduceLROnPlateau`` on the validation metric (mode max), per epoch.
- ``none``: constant lr.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from timm.optim import param_groups_weight_decay
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, OneCycleLR, ReduceLROnPlateau

from kseg.config import Config
from kseg.registry import Registry
from kseg.typed import ConfigError

Params = Iterable[torch.nn.Parameter] | list[dict[str, Any]]  # tensors, or torch parameter groups
OptimizerFactory = Callable[[Params, float, float, dict[str, Any]], Optimizer]
OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer")


@OPTIMIZERS.register("adam")
def _adam(params: Params, lr: float, wd: float, extra: dict[str, Any]) -> Optimizer:
    return torch.optim.Adam(params, lr=lr, weight_decay=wd, **extra)


@OPTIMIZERS.register("adamw")
def _adamw(params: Params, lr: float, wd: float, extra: dict[str, Any]) -> Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd, **extra)


@OPTIMIZERS.register("sgd")
def _sgd(params: Params, lr: float, wd: float, extra: dict[str, Any]) -> Optimizer:
    return torch.optim.SGD(params, lr=lr, weight_decay=wd, **{"momentum": 0.9, **extra})


@OPTIMIZERS.register("rmsprop")
def _rmsprop(params: Params, lr: float, wd: float, extra: dict[str, Any]) -> Optimizer:
    return torch.optim.RMSprop(params, lr=lr, weight_decay=wd, **extra)


def parameter_groups(cfg: Config, model: nn.Module) -> Params:
    """``model``'s parameters for the optimizer.

    ``optim.no_decay_norm_bias``: timm's ``param_groups_weight_decay``, a group of the 1-D tensors and ``*.bias``
    (norm weights and biases, conv / linear biases) at weight decay 0 and one of the rest at ``optim.weight_decay``;
    it leaves out parameters frozen at this point, so build the optimizer before freezing the encoder. Off: every
    parameter in one group at ``optim.weight_decay``.
    """
    if cfg.optim.no_decay_norm_bias:
        return param_groups_weight_decay(model, weight_decay=cfg.optim.weight_decay)
    return list(model.parameters())


def build_optimizer(cfg: Config, params: nn.Module | Iterable[torch.nn.Parameter]) -> Optimizer:
    """The ``optim.name`` optimizer with ``optim.lr``, ``weight_decay`` and ``optim.params``.

    ``params``: a model (its trainable parameters, grouped by ``parameter_groups``) or parameter tensors (one
    group, every tensor decayed).
    """
    o = cfg.optim
    groups = parameter_groups(cfg, params) if isinstance(params, nn.Module) else params
    try:
        return OPTIMIZERS.get(o.name)(groups, o.lr, o.weight_decay, dict(o.params))
    except TypeError as e:
        raise ConfigError(f"optim.params: {o.name} does not accept {o.params}: {e}") from e


# --------------------------------------------------------------------------- schedules


class WarmupCosine:
    """lr factor after ``step`` optimizer steps: linear warmup, then cosine from 1 to ``min_ratio``."""

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> None:
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.min_ratio = float(min_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupStep:
    """lr factor after ``step`` optimizer steps: linear warmup, then ``gamma ** (step // step_size)``."""

    def __init__(self, warmup_steps: int, step_size: int, gamma: float) -> None:
        self.warmup_steps = int(warmup_steps)
        self.step_size = max(1, int(step_size))
        self.gamma = float(gamma)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return self.gamma ** ((step - self.warmup_steps) // self.step_size)


class LrSchedule:
    """One interface over per-step, per-epoch and metric-driven torch schedulers."""

    def __init__(self, scheduler: Any, interval: Literal["step", "epoch", "none"]) -> None:
        self.scheduler = scheduler
        self.interval = interval

    def step_batch(self) -> None:
        """Call after every optimizer step."""
        if self.interval == "step":
            with warnings.catch_warnings():  # AMP / skip_nonfinite may skip an optimizer step: keep the schedule
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
                self.scheduler.step()

    def step_epoch(self, metric: float | None = None) -> None:
        """Call after every epoch's validation with its metric (used by ``plateau``)."""
        if self.interval != "epoch":
            return
        if isinstance(self.scheduler, ReduceLROnPlateau):
            if metric is None or not math.isfinite(metric):
                return
            self.scheduler.step(metric)
        else:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scheduler is None else self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scheduler is not None and state:
            self.scheduler.load_state_dict(state)


ScheduleFactory = Callable[[Optimizer, Config, int], LrSchedule]
SCHEDULERS: Registry[ScheduleFactory] = Registry("scheduler")  # config errors list them in this order


def _params(cfg: Config, allowed: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(cfg.sched.params) - set(allowed))
    if unknown:
        raise ConfigError(
            f"sched.params.{unknown[0]}: not a {cfg.sched.name} option; valid: {', '.join(sorted(allowed))}"
        )
    return {**allowed, **cfg.sched.params}


def _warmup_steps(cfg: Config, steps_per_epoch: int) -> int:
    return int(round(cfg.sched.warmup_epochs * steps_per_epoch))


@SCHEDULERS.register("none")
def _none(opt: Optimizer, cfg: Config, steps_per_epoch: int) -> LrSchedule:
    return LrSchedule(None, "none")


@SCHEDULERS.register("onecycle")
def _onecycle(opt: Optimizer, cfg: Config, steps_per_epoch: int) -> LrSchedule:
    pct = cfg.sched.warmup_epochs / cfg.train.epochs if cfg.sched.warmup_epochs > 0 else 0.3
    p = _params(
        cfg,
        {
            "pct_start": pct,
            "anneal_strategy": "cos",
            "div_factor": 25.0,
            "final_div_factor": 1e4,
            "three_phase": False,
            "cycle_momentum": True,
        },
    )
    total = max(1, cfg.train.epochs * steps_per_epoch)
    return LrSchedule(OneCycleLR(opt, max_lr=cfg.optim.lr, total_steps=total, **p), "step")


@SCHEDULERS.register("cosine")
def _cosine(opt: Optimizer, cfg: Config, steps_per_epoch: int) -> LrSchedule:
    p = _params(cfg, {"min_lr": 0.0})
    total = cfg.train.epochs * steps_per_epoch
    fn = WarmupCosine(_warmup_steps(cfg, steps_per_epoch), total, float(p["min_lr"]) / cfg.optim.lr)
    return LrSchedule(LambdaLR(opt, fn), "step")


@SCHEDULERS.register("plateau")
def _plateau(opt: Optimizer, cfg: Config, steps_per_epoch: int) -> LrSchedule:
    if cfg.sched.warmup_epochs > 0:
        raise ConfigError("sched.warmup_epochs: plateau has no warmup; use cosine, onecycle or step for a warmup")
    p = _params(cfg, {"factor": 0.5, "patience": 2, "threshold": 1e-4, "min_lr": 0.0, "cooldown": 0})
    return LrSchedule(ReduceLROnPlateau(opt, mode="max", **p), "epoch")


@SCHEDULERS.register("step")
def _step(opt: Optimizer, cfg: Config, steps_per_epoch: int) -> LrSchedule:
    p = _params(cfg, {"step_size": max(1, cfg.train.epochs // 3), "gamma": 0.1})
    fn = WarmupStep(_warmup_steps(cfg, steps_per_epoch), float(p["step_size"]) * steps_per_epoch, float(p["gamma"]))
    return LrSchedule(LambdaLR(opt, fn), "step")


def build_scheduler(cfg: Config, optimizer: Optimizer, steps_per_epoch: int) -> LrSchedule:
    """The ``sched.name`` schedule for ``train.epochs`` epochs of ``steps_per_epoch`` optimizer steps."""
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    return SCHEDULERS.get(cfg.sched.name)(optimizer, cfg, steps_per_epoch)
