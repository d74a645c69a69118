"""Fold / model ensemble with TTA: probabilities averaged over views, folds and experiments.

Averaging rule (all in probability space, after sigmoid/softmax via ``kseg.models.predict_proba``):

- over the TTA views of one checkpoint: plain mean of the de-augmented probabilities;
- over the folds of one experiment: plain mean;
- over experiments: plain mean (an experiment with 5 folds weighs as much as one with 3), or the weights
  ``w_e`` (summing to 1) that ``kseg ensemble`` chose (``exp_weights``, from ``ensemble.json``).

So checkpoint ``m`` of experiment ``e`` with ``F_e`` folds gets weight ``1 / (E * F_e)`` (``w_e / F_e``). Members are
grouped by input preprocessing (``data.image_size``, ``data.resize``, ``data.normalize`` of their
checkpoint config): each group sees its own input tensors and returns the weighted sum of its members at
its model resolution; the caller restores every group to the submission size and adds them up
(restoring is linear, so the order of averaging and restoring does not matter).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from kseg.config import Config
from kseg.infer.checkpoints import find_checkpoints
from kseg.layout import BEST
from kseg.train.runtime import amp_dtype, maybe_compile
from kseg.tta import TTAPair, get_tta

log = logging.getLogger(__name__)

__all__ = ["Member", "Group", "Ensemble", "tta_proba", "resolve_device", "preprocess_key"]


@dataclass
class Member:
    """One checkpoint: its model (eval mode) and the config it was trained with."""

    model: nn.Module
    cfg: Config
    exp: str = ""
    fold: int = 0
    path: Path | None = None


@dataclass
class Group:
    """Members sharing one input preprocessing; ``cfg`` is the run config with their data settings."""

    cfg: Config
    members: list[Member] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


def experiment_weights(experiments: Sequence[str], weights: Mapping[str, float] | None) -> dict[str, float]:
    """{experiment: weight} summing to 1: equal without ``weights``, else ``weights`` normalised (ValueError when
    an experiment has none, or one is not > 0)."""
    if weights is None:
        return {e: 1.0 / len(experiments) for e in experiments}
    missing = [e for e in experiments if not weights.get(e, 0) > 0]
    if missing:
        raise ValueError(f"ensemble weights {dict(weights)}: no weight > 0 for experiment {missing[0]!r}")
    total = sum(weights[e] for e in experiments)
    return {e: weights[e] / total for e in experiments}


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; anything else as given (``cpu``, ``cuda:1``)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available (use train.device=cpu)")
    return dev


def preprocess_key(cfg: Config) -> tuple:
    """What a model's input tensors depend on."""
    d = cfg.data
    return (tuple(d.image_size), d.resize, d.normalize)


def _autocast(device: torch.device, amp: bool, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=dtype)
    return contextlib.nullcontext()


@torch.inference_mode()
def tta_proba(
    model: nn.Module,
    x: torch.Tensor,
    pairs: Sequence[TTAPair],
    mode: str,
    amp: bool = False,
    amp_dtype: torch.dtype = torch.float16,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean over TTA views of one model's probabilities.

    x: [N, 3, h, w] on the model's device -> (probs float32 [N, C, h, w], aux float32 [N, C] or None).
    """
    from kseg.models import predict_proba

    probs_sum: torch.Tensor | None = None
    aux_sum: torch.Tensor | None = None
    with _autocast(x.device, amp, amp_dtype):
        for pair in pairs:
            probs, aux = predict_proba(model, pair.augment(x), mode)
            probs = pair.deaugment(probs.float())
            probs_sum = probs if probs_sum is None else probs_sum + probs
            if aux is not None:
                aux = aux.float()
                aux_sum = aux if aux_sum is None else aux_sum + aux
    assert probs_sum is not None, "no TTA view"
    n = float(len(pairs))
    return probs_sum / n, (aux_sum / n if aux_sum is not None else None)


class Ensemble:
    """Checkpoints of one or several experiments averaged with TTA (see the module docstring)."""

    def __init__(
        self,
        cfg: Config,
        members: Sequence[Member],
        tta: str = "none",
        device: str | torch.device = "cpu",
        amp: bool = True,
        exp_weights: Mapping[str, float] | None = None,
    ) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one checkpoint")
        self.cfg = cfg
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.amp = amp and self.device.type == "cuda"
        self.amp_dtype = amp_dtype(cfg.train.amp_dtype, self.device)
        self.channels_last = cfg.predict.channels_last and self.device.type == "cuda"
        self.tta = tta
        self.pairs = get_tta(tta)
        classes = cfg.competition.classes
        per_exp: dict[str, int] = {}
        for m in members:
            if tuple(m.cfg.competition.classes) != tuple(classes):
                raise ValueError(
                    f"checkpoint {m.path or m.exp}: classes {list(m.cfg.competition.classes)} differ from the "
                    f"config's {list(classes)}"
                )
            per_exp[m.exp] = per_exp.get(m.exp, 0) + 1
        self.exp_weights = experiment_weights(list(per_exp), exp_weights)
        groups: dict[tuple, Group] = {}
        for m in members:
            key = preprocess_key(m.cfg)
            if key not in groups:
                data = dataclasses.replace(
                    cfg.data, image_size=m.cfg.data.image_size, resize=m.cfg.data.resize, normalize=m.cfg.data.normalize
                )
                groups[key] = Group(cfg.replace(data=data))
            g = groups[key]
            h, w = g.cfg.data.image_size
            if h != w and any(p.swaps_hw for p in self.pairs):
                raise ValueError(
                    f"tta={tta} rotates by 90 degrees, which swaps H and W, but data.image_size of "
                    f"{m.path or m.exp} is {h}x{w}, not square; use tta=hvflip (or a square image_size)"
                )
            m.model.eval().to(self.device)
            if self.channels_last:
                m.model.to(memory_format=torch.channels_last)
            maybe_compile(m.model, cfg.predict.compile)
            g.members.append(m)
            g.weights.append(self.exp_weights[m.exp] / per_exp[m.exp])
        self.groups: list[Group] = list(groups.values())
        self.members = list(members)
        self.experiments = list(per_exp)

    @classmethod
    def from_runs(
        cls,
        cfg: Config,
        runs: Sequence[str] = (),
        folds: Sequence[int] = (),
        tta: str = "none",
        device: str | torch.device = "auto",
        amp: bool = True,
        weights: str = BEST,
        exp_weights: Mapping[str, float] | None = None,
    ) -> Ensemble:
        """Load ``<runs_dir>/<exp>/fold<K>/<weights>`` for every experiment in ``runs`` (default: the config's)."""
        from kseg.models import load_checkpoint

        dev = device if isinstance(device, torch.device) else resolve_device(device)
        members = []
        for exp in runs or (cfg.name,):
            for fold, path in find_checkpoints(cfg.runs_dir, exp, folds, weights):
                model, mcfg = load_checkpoint(path, map_location="cpu")
                members.append(Member(model, mcfg, exp, fold, path))
                log.info("loaded %s (%s fold %d, %s)", path, exp, fold, mcfg.model.encoder)
        return cls(cfg, members, tta=tta, device=dev, amp=amp, exp_weights=exp_weights)

    def __len__(self) -> int:
        return len(self.members)

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, group: int = 0) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """Weighted sum over the members of ``group`` for inputs x [N, 3, h, w] at that group's image size.

        Returns (probs float32 [N, C, h, w], aux_sum float32 [N, C] or None, aux_weight): the aux sum
        covers only members with an aux head, ``aux_weight`` is their total weight (divide to average).
        """
        g = self.groups[group]
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        total: torch.Tensor | None = None
        aux_total: torch.Tensor | None = None
        aux_weight = 0.0
        for m, w in zip(g.members, g.weights, strict=True):
            probs, aux = tta_proba(m.model, x, self.pairs, m.cfg.competition.mode, self.amp, self.amp_dtype)
            total = probs * w if total is None else total + probs * w
            if aux is not None:
                aux_total = aux * w if aux_total is None else aux_total + aux * w
                aux_weight += w
        assert total is not None
        return total, aux_total, aux_weight
