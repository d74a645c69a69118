"""Training losses from ``segmentation_models_pytorch.losses``, combined as a weighted sum from ``cfg.loss``.

Targets come from the dataset as one-hot masks [N,C,h,w]. Sigmoid modes (binary, multilabel) use them as
they are; multiclass (softmax over K = C+1 channels) converts them to an index map [N,h,w]
(0 = background, c+1 = class c). The optional aux head gets BCE on "class c is present in the image".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from kseg.config import Config
from kseg.registry import Registry
from kseg.typed import ConfigError

LossFactory = Callable[[str, dict[str, Any]], nn.Module]
LOSSES: Registry[LossFactory] = Registry("loss")


def smp_mode(mode: str) -> str:
    """kseg competition mode -> smp loss mode (they share names: binary, multilabel, multiclass)."""
    return {
        "binary": smp.losses.BINARY_MODE,
        "multilabel": smp.losses.MULTILABEL_MODE,
        "multiclass": smp.losses.MULTICLASS_MODE,
    }[mode]


def index_target(mask: torch.Tensor) -> torch.Tensor:
    """One-hot masks [N,C,h,w] -> long index map [N,h,w]: 0 where no class, else 1 + first class present."""
    background = torch.full_like(mask[:, :1], 0.5)
    return torch.cat([background, mask], dim=1).argmax(dim=1)


def presence_target(mask: torch.Tensor) -> torch.Tensor:
    """One-hot masks [N,C,h,w] -> float [N,C]: 1 where the class has any pixel."""
    return (mask.flatten(2).amax(dim=2) > 0).to(torch.float32)


def _sigmoid_only(name: str, mode: str) -> None:
    if mode == "multiclass":
        raise ConfigError(f"loss {name}: the competition is multiclass (softmax over classes + background); use ce")


def _tensor_params(params: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    out = dict(params)
    for k in keys:
        if k in out and out[k] is not None and not isinstance(out[k], torch.Tensor):
            out[k] = torch.as_tensor(out[k], dtype=torch.float32)
    return out


@LOSSES.register("bce")
def _bce(mode: str, params: dict[str, Any]) -> nn.Module:
    _sigmoid_only("bce", mode)
    return nn.BCEWithLogitsLoss(**_tensor_params(params, ("pos_weight", "weight")))


@LOSSES.register("softbce")
def _softbce(mode: str, params: dict[str, Any]) -> nn.Module:
    _sigmoid_only("softbce", mode)
    return smp.losses.SoftBCEWithLogitsLoss(**_tensor_params(params, ("pos_weight", "weight")))


@LOSSES.register("ce")
def _ce(mode: str, params: dict[str, Any]) -> nn.Module:
    if mode != "multiclass":
        raise ConfigError(f"loss ce: needs a multiclass (softmax) competition, this one is {mode}; use bce")
    return nn.CrossEntropyLoss(**_tensor_params(params, ("weight",)))


def _smp_loss(cls: type[nn.Module]) -> LossFactory:
    def make(mode: str, params: dict[str, Any]) -> nn.Module:
        return cls(mode=smp_mode(mode), **params)

    return make


LOSSES.register("dice", _smp_loss(smp.losses.DiceLoss))
LOSSES.register("lovasz", _smp_loss(smp.losses.LovaszLoss))
LOSSES.register("focal", _smp_loss(smp.losses.FocalLoss))
LOSSES.register("tversky", _smp_loss(smp.losses.TverskyLoss))
LOSSES.register("jaccard", _smp_loss(smp.losses.JaccardLoss))


class SegLoss(nn.Module):
    """Weighted sum of mask losses (+ aux presence BCE); ``forward(out, mask) -> (total, parts)``.

    ``out`` is the model's dict (``mask`` logits [N,K,h,w], optional ``aux`` [N,C]); ``mask`` the one-hot
    targets [N,C,h,w]. ``parts`` maps each term name to its detached unweighted value.
    """

    def __init__(self, mode: str, terms: list[tuple[str, float, nn.Module]], aux_weight: float = 0.0) -> None:
        super().__init__()
        self.mode = mode
        self.names = [n for n, _, _ in terms]
        self.weights = [w for _, w, _ in terms]
        self.terms = nn.ModuleList([m for _, _, m in terms])
        self.aux_weight = aux_weight

    def forward(self, out: dict[str, torch.Tensor], mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        logits = out["mask"].float()
        target = index_target(mask) if self.mode == "multiclass" else mask.float()
        total = logits.new_zeros(())
        parts: dict[str, torch.Tensor] = {}
        for name, weight, fn in zip(self.names, self.weights, self.terms, strict=True):
            value = fn(logits, target)
            parts[name] = value.detach()
            total = total + weight * value
        aux = out.get("aux")
        if aux is not None:  # weight 0 still joins the graph (DDP needs every parameter used)
            value = F.binary_cross_entropy_with_logits(aux.float(), presence_target(mask))
            parts["aux"] = value.detach()
            total = total + self.aux_weight * value
        return total, parts


def build_loss(cfg: Config) -> SegLoss:
    """The ``cfg.loss`` weighted sum for the competition's mode, with ``train.aux_weight`` on the aux head."""
    if not cfg.loss:
        raise ConfigError("loss: at least one term is needed, e.g. [{name: bce, weight: 1}]")
    mode = cfg.competition.mode
    terms = []
    for i, term in enumerate(cfg.loss):
        factory = LOSSES.get(term.name)
        try:
            module = factory(mode, dict(term.params))
        except TypeError as e:
            raise ConfigError(f"loss[{i}].params: {term.name} does not accept {term.params}: {e}") from e
        terms.append((term.name if term.name not in [t[0] for t in terms] else f"{term.name}{i}", term.weight, module))
    return SegLoss(mode, terms, aux_weight=cfg.train.aux_weight if cfg.model.aux_head else 0.0)
