"""Test-time augmentation: pairs of augment / deaugment functions on batched tensors.

Every function takes and returns a tensor ``[N, C, H, W]`` (any dtype, any device) and acts on the
last two dims only, so the same pair works on images ``[N, 3, h, w]`` and on model outputs
``[N, K, h, w]``: ``deaugment(model(augment(x)))`` is aligned with ``x`` again.

Modes (``predict.tta`` / ``kseg predict --tta``):

- ``none``: identity.
- ``hflip``: identity + horizontal flip (2 views).
- ``vflip``: identity + vertical flip (2 views).
- ``hvflip``: identity, hflip, vflip and both flips (= rotation by 180 degrees) (4 views).
- ``d4``: the 8 symmetries of the square: identity, rot90, rot180, rot270, hflip, vflip, transpose,
  anti-transpose.

Four of the ``d4`` views (rot90, rot270, transpose, anti-transpose) swap H and W: on a non-square
input the model sees a ``[N, 3, w, h]`` image. The functions here round-trip on any shape, but the
predictor (``kseg.infer``) refuses ``d4`` unless ``data.image_size`` is square, because a model trained
at ``(h, w)`` does not in general predict sensibly (or at all, with stride constraints) at ``(w, h)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from kseg.registry import Registry

Transform = Callable[[torch.Tensor], torch.Tensor]

__all__ = [
    "TTAPair",
    "TTA_MODES",
    "PAIRS",
    "get_tta",
    "tta_names",
    "swaps_hw",
]


@dataclass(frozen=True)
class TTAPair:
    """One TTA view: ``augment`` the input, ``deaugment`` the output; both ``[N,C,H,W] -> [N,C,*,*]``."""

    name: str
    augment: Transform
    deaugment: Transform
    swaps_hw: bool = False  # True when augment turns [.., H, W] into [.., W, H]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _hflip(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-1)


def _vflip(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-2)


def _rot180(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-2, -1)


def _rot90(x: torch.Tensor) -> torch.Tensor:
    """Counter-clockwise rotation by 90 degrees: [.., H, W] -> [.., W, H]."""
    return torch.rot90(x, 1, dims=(-2, -1))


def _rot270(x: torch.Tensor) -> torch.Tensor:
    """Clockwise rotation by 90 degrees (inverse of ``_rot90``): [.., H, W] -> [.., W, H]."""
    return torch.rot90(x, -1, dims=(-2, -1))


def _transpose(x: torch.Tensor) -> torch.Tensor:
    """Mirror over the main diagonal: y[i, j] = x[j, i]."""
    return x.transpose(-2, -1)


def _antitranspose(x: torch.Tensor) -> torch.Tensor:
    """Mirror over the anti-diagonal: y[i, j] = x[H-1-j, W-1-i] (its own inverse)."""
    return x.flip(-2, -1).transpose(-2, -1)


PAIRS: dict[str, TTAPair] = {
    p.name: p
    for p in (
        TTAPair("identity", _identity, _identity),
        TTAPair("hflip", _hflip, _hflip),
        TTAPair("vflip", _vflip, _vflip),
        TTAPair("rot180", _rot180, _rot180),
        TTAPair("rot90", _rot90, _rot270, swaps_hw=True),
        TTAPair("rot270", _rot270, _rot90, swaps_hw=True),
        TTAPair("transpose", _transpose, _transpose, swaps_hw=True),
        TTAPair("antitranspose", _antitranspose, _antitranspose, swaps_hw=True),
    )
}
"""Every single view by name."""

TTA_MODES: Registry[tuple[TTAPair, ...]] = Registry("tta mode")
TTA_MODES.register("none", (PAIRS["identity"],))
TTA_MODES.register("hflip", (PAIRS["identity"], PAIRS["hflip"]))
TTA_MODES.register("vflip", (PAIRS["identity"], PAIRS["vflip"]))
TTA_MODES.register("hvflip", tuple(PAIRS[n] for n in ("identity", "hflip", "vflip", "rot180")))
TTA_MODES.register("d4", tuple(PAIRS.values()))


def get_tta(mode: str) -> list[TTAPair]:
    """The views of TTA ``mode`` (none | hflip | vflip | hvflip | d4); raises naming the valid modes."""
    return list(TTA_MODES.get(mode))


def tta_names() -> list[str]:
    """Valid TTA mode names."""
    return TTA_MODES.names()


def swaps_hw(mode: str) -> bool:
    """True when some view of ``mode`` swaps H and W (the model input must then be square)."""
    return any(p.swaps_hw for p in get_tta(mode))
