"""Helpers shared by the kseg.infer tests: a constant fake model, ensemble members of it, a config at a model size."""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from kseg.config import Config
from kseg.infer.ensemble import Member

LOG3 = math.log(3.0)


class ConstModel(nn.Module):
    """Logits = ``bias`` [K, h, w] (broadcast over the batch) + ``gain`` * first input channel."""

    def __init__(self, bias: torch.Tensor | float, k: int = 4, gain: float = 0.0, aux: float | None = None) -> None:
        super().__init__()
        self.bias = bias
        self.k = k
        self.gain = gain
        self.aux = aux
        self.aux_head = aux is not None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        n, _, h, w = x.shape
        base = torch.as_tensor(self.bias, dtype=torch.float32)
        logits = base.expand(n, self.k, h, w) + self.gain * x[:, :1]
        out = {"mask": logits.clone()}
        if self.aux is not None:
            out["aux"] = torch.full((n, self.k), self.aux)
        return out


def with_size(cfg: Config, size: tuple[int, int], **data: object) -> Config:
    return cfg.replace(data=dataclasses.replace(cfg.data, image_size=size, **data))


def members(cfg: Config, spec: list[tuple[str, float]], **kw: object) -> list[Member]:
    return [Member(ConstModel(logit, **kw), cfg, exp, fold) for fold, (exp, logit) in enumerate(spec)]
