"""Post-processing of class probability maps: quantize, threshold, drop small components, empty gates.

The one binarization rule, shared by ``kseg tune`` (on the uint8 OOF store) and ``kseg predict``:

* probabilities are stored and compared as ``q = quantize(p) = round(p * 255)`` (uint8, float32 math,
  round half to even);
* a pixel is foreground at threshold ``t`` when ``q > threshold_level(t)`` with
  ``threshold_level(t) = floor(float32(t) * float32(255))`` (an int in -1..255). ``t = 0.5`` keeps
  ``q >= 128``; ``t = 0`` keeps ``q >= 1``; ``t = 1`` keeps nothing.

Every gate uses the same rule: a value "passes" gate ``g`` when ``q > threshold_level(g)``; a gate
``<= 0`` is off. For one class map, ``apply_postprocess`` does, in order:

1. ``mask = q > level(threshold)``;
2. ``min_size > 0``: remove 8-connected components of fewer than ``min_size`` pixels;
3. empty the mask when
   - ``top_threshold`` is None and ``min_area > 0`` and fewer than ``min_area`` pixels survive, or
   - ``top_threshold`` is set (triplet rule) and fewer than ``max(min_area, 1)`` pixels have
     ``q > level(top_threshold)``, or
   - ``max_prob_gate > 0`` and no pixel has ``q > level(max_prob_gate)``, or
   - ``aux_gate > 0`` and the aux-head probability fails ``quantize(aux) > level(aux_gate)``.

Exclusive classes (``competition.exclusive``; multiclass implies it): each pixel goes to at most one
class. ``exclusive_candidates`` runs first, on all classes of an image together: the argmax over
(background, class 0, ..., class C-1) of the quantized values decides a pixel's class, with the
background ``q_bg = max(0, 255 - sum_c q_c)`` (stored maps drop the softmax background channel) and ties
going to the earlier entry (background, then the lower class index). Every other class's value at that
pixel becomes 0, which no threshold or gate keeps (``level >= 0`` for values in [0, 1]); steps 1-3 then
run per class on these candidate maps, so min sizes, ``min_area``, the max-prob gate and the triplet
rule see only the class's own candidate pixels (the aux gate is per image and unchanged). With a single
class there is nothing to exclude and the map is left as it is: its threshold already is the decision
against the background (an argmax would turn every threshold below 0.5 into 0.5, e.g. the 1-class softmax
recipe ``configs/airplanes/unet-binary.yaml`` that tunes thresholds 0.3-0.7).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

log = logging.getLogger(__name__)

__all__ = [
    "ClassParams",
    "quantize",
    "threshold_level",
    "binarize",
    "exclusive_candidates",
    "components",
    "remove_small",
    "apply_postprocess",
    "apply_postprocess_batch",
    "default_params",
    "load_postprocess",
    "params_to_dict",
    "CONNECTIVITY",
]

CONNECTIVITY = 8  # as cv2.connectedComponents' default in the public Kaggle kernels


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class ClassParams:
    """Post-processing of one class (see the module docstring for the exact rule)."""

    threshold: float = 0.5
    min_size: int = 0  # components with fewer pixels are removed
    min_area: int = 0  # empty the mask when fewer pixels survive (triplet: exceed top_threshold)
    max_prob_gate: float = 0.0  # empty the mask when no pixel exceeds it; 0 = off
    aux_gate: float = 0.0  # empty the mask when the aux-head probability does not exceed it; 0 = off
    top_threshold: float | None = None  # triplet rule: keep only if enough pixels exceed it

    def __post_init__(self) -> None:
        for name in ("threshold", "max_prob_gate", "aux_gate", "top_threshold"):
            value = getattr(self, name)
            if value is None and name == "top_threshold":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise ValueError(f"{name}: expected a number in [0, 1], got {value!r}")
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name}: expected a number in [0, 1], got {value!r}")
            object.__setattr__(self, name, float(value))
        for name in ("min_size", "min_area"):
            value = getattr(self, name)
            ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            if isinstance(value, float) and value.is_integer():
                value, ok = int(value), True
            if not ok or value < 0:
                raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")
            object.__setattr__(self, name, int(value))


def default_params(num_classes: int) -> list[ClassParams]:
    """Threshold 0.5, nothing else, for every class."""
    return [ClassParams() for _ in range(num_classes)]


def params_to_dict(p: ClassParams) -> dict[str, Any]:
    """Plain JSON-friendly dict of one class's parameters."""
    return dataclasses.asdict(p)


_PARAM_FIELDS = tuple(f.name for f in dataclasses.fields(ClassParams))


def load_postprocess(path: str | Path, num_classes: int | None = None) -> list[ClassParams]:
    """Per-class parameters of a ``postprocess.json`` written by ``kseg tune``.

    The file holds ``{"classes": [{"name": ..., "params": {threshold, min_size, ...}}, ...], ...}``.
    Raises ValueError naming the file and the field for anything malformed (and for a class count
    other than ``num_classes`` when given).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"post-processing file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise ValueError(f"{path}: classes: expected a list of per-class entries at the top level")
    out = []
    for i, entry in enumerate(data["classes"]):
        where = f"{path}: classes[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("params"), dict):
            raise ValueError(f"{where}.params: expected a mapping of post-processing parameters")
        params = entry["params"]
        unknown = sorted(set(params) - set(_PARAM_FIELDS))
        if unknown:
            raise ValueError(f"{where}.params.{unknown[0]}: unknown field; valid: {', '.join(_PARAM_FIELDS)}")
        try:
            out.append(ClassParams(**params))
        except ValueError as e:
            raise ValueError(f"{where}.params.{e}") from None
    if num_classes is not None and len(out) != num_classes:
        raise ValueError(f"{path}: classes: {len(out)} entries for {num_classes} classes")
    if not out:
        raise ValueError(f"{path}: classes: empty list")
    return out


# --------------------------------------------------------------------------- pixel rules


def quantize(probs: np.ndarray | torch.Tensor) -> np.ndarray:
    """Probabilities (any shape, floats in [0, 1]) -> uint8 ``round(p * 255)`` computed in float32.

    The OOF store format; a torch tensor is quantized on its device, then copied to the CPU.
    """
    if isinstance(probs, torch.Tensor):
        if probs.device.type == "cpu":
            return quantize(probs.detach().to(torch.float32).numpy())
        q = (probs.detach().to(torch.float32) * 255.0).round_().clamp_(0, 255).to(torch.uint8)
        return q.cpu().numpy()
    p = np.ascontiguousarray(probs, dtype=np.float32)
    if p.size == 0:
        return p.astype(np.uint8)
    # One SIMD pass: float32 p * 255, rounded half to even and saturated, as the torch path (negatives -> 0 first)
    rows = p.reshape(-1, p.shape[-1]) if p.ndim >= 2 else p.reshape(1, -1)
    if rows.min() < 0:
        rows = cv2.max(rows, 0.0)
    return cv2.convertScaleAbs(rows, alpha=255.0).reshape(p.shape)


def threshold_level(threshold: float) -> int:
    """``floor(float32(threshold) * 255)`` clipped to -1..255: foreground is ``q > level``."""
    level = math.floor(float(np.float32(threshold) * np.float32(255)))
    return int(min(max(level, -1), 255))


def binarize(q: np.ndarray, threshold: float) -> np.ndarray:
    """uint8 quantized probabilities [...] -> bool [...] foreground ``q > threshold_level(threshold)``."""
    q = np.asarray(q)
    if q.dtype != np.uint8:
        raise TypeError(f"binarize expects uint8 quantized probabilities (see quantize), got {q.dtype}")
    level = threshold_level(threshold)
    if level < 0:
        return np.ones(q.shape, dtype=bool)
    if level >= 255:
        return np.zeros(q.shape, dtype=bool)
    return q > np.uint8(level)


_DENSE = 0.08  # foreground share above which whole-image bincount / take beat boolean indexing


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(labels int32 [H, W], labels of the foreground pixels [P] or None when dense, areas int64 [K])."""
    m = np.ascontiguousarray(mask)
    m = m.view(np.uint8) if m.dtype == bool else (m != 0).view(np.uint8)
    n, labels = cv2.connectedComponents(m, connectivity=CONNECTIVITY, ltype=cv2.CV_32S)
    if n <= 1:
        return labels, None, np.zeros(n, dtype=np.int64)
    if np.count_nonzero(m) <= _DENSE * m.size:
        fg = labels[m.view(bool)]
        return labels, fg, np.bincount(fg, minlength=n).astype(np.int64)
    areas = np.bincount(labels.ravel(), minlength=n).astype(np.int64)
    areas[0] = 0
    return labels, None, areas


def components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected components of a bool/uint8 [H, W] mask.

    Returns (labels int32 [H, W], 0 = background; areas int64 [K] pixels per label, areas[0] = 0).
    """
    labels, _, areas = _components(mask)
    return labels, areas


def remove_small(mask: np.ndarray, min_size: int) -> np.ndarray:
    """bool [H, W] mask without its 8-connected components of fewer than ``min_size`` pixels.

    One connected-components pass, areas by ``np.bincount`` and a lookup table over the labels.
    """
    mask = np.ascontiguousarray(mask, dtype=bool)
    if min_size <= 1:
        return mask
    if np.count_nonzero(mask) < min_size:
        return np.zeros_like(mask)
    labels, fg, areas = _components(mask)
    keep = areas >= min_size
    keep[0] = False
    if keep[1:].all():
        return mask
    if not keep.any():
        return np.zeros_like(mask)
    if fg is None:  # dense: lookup over every pixel
        return np.take(keep, labels)
    out = np.zeros_like(mask)
    out[mask] = keep[fg]
    return out


def _passes(q_value: np.ndarray | int, gate: float) -> np.ndarray | bool:
    """Whether quantized values pass a gate (``q > level(gate)``); a gate <= 0 always passes."""
    if gate <= 0:
        return True
    return np.asarray(q_value) > threshold_level(gate)


def _class_map(q: np.ndarray, p: ClassParams, aux_q: int | None) -> np.ndarray:
    """One class: uint8 [H, W] quantized probabilities -> bool [H, W] final mask."""
    if p.aux_gate > 0:
        if aux_q is None:
            raise ValueError("aux_gate > 0 needs aux-head probabilities (aux=None given)")
        if not _passes(aux_q, p.aux_gate):
            return np.zeros(q.shape, dtype=bool)
    if p.max_prob_gate > 0 and not _passes(int(q.max()), p.max_prob_gate):
        return np.zeros(q.shape, dtype=bool)
    if p.top_threshold is not None:
        if np.count_nonzero(binarize(q, p.top_threshold)) < max(p.min_area, 1):
            return np.zeros(q.shape, dtype=bool)
    mask = remove_small(binarize(q, p.threshold), p.min_size)
    if p.top_threshold is None and p.min_area > 0 and np.count_nonzero(mask) < p.min_area:
        return np.zeros(q.shape, dtype=bool)
    return mask


def exclusive_candidates(q: np.ndarray) -> np.ndarray:
    """uint8 [..., C, H, W] -> uint8 [..., C, H, W]: each pixel's value kept only in the class that wins it.

    The winner is the argmax over (background, classes) with ``q_bg = max(0, 255 - sum_c q_c)``; ties go
    to the background, then to the lower class index. Other classes (all of them where the background
    wins) get 0 at that pixel. One class (C = 1) is returned unchanged (see the module docstring).
    The one exclusive-class rule of ``kseg tune`` and ``kseg predict``.
    """
    q = np.asarray(q)
    if q.dtype != np.uint8 or q.ndim < 3:
        raise ValueError(f"exclusive_candidates: expected uint8 [..., C, H, W], got {q.dtype} {q.shape}")
    num = q.shape[-3]
    if num == 1:
        return q
    top = q.max(axis=-3)
    background = 255 - q.sum(axis=-3, dtype=np.int16 if num < 128 else np.int32)  # < 0 if the maps sum past 1
    free = top > background  # a class wins the pixel; cleared once the first class at the max takes it
    out = np.zeros_like(q)
    for c in range(num):  # classes in order: a tie at the max goes to the lower index
        qc = q[..., c, :, :]
        keep = (qc == top) & free
        free &= ~keep
        np.copyto(out[..., c, :, :], qc, where=keep)
    return out


def apply_postprocess(
    q: np.ndarray, params: list[ClassParams], aux: np.ndarray | None = None, exclusive: bool = False
) -> np.ndarray:
    """uint8 quantized probabilities [C, H, W] -> uint8 0/1 masks [C, H, W].

    ``params`` has one entry per class; ``aux`` are aux-head probabilities float [C] in [0, 1]
    (needed only by classes with ``aux_gate > 0``). ``exclusive``: mutually exclusive classes, each
    pixel in at most one mask (``exclusive_candidates`` first, see the module docstring).
    """
    q = np.asarray(q)
    if q.ndim != 3:
        raise ValueError(f"apply_postprocess: expected [C, H, W], got shape {q.shape}")
    if exclusive:
        q = exclusive_candidates(q)
    if len(params) != q.shape[0]:
        raise ValueError(f"apply_postprocess: {len(params)} class params for {q.shape[0]} channels")
    aux_q = None
    if aux is not None:
        aux_q = quantize(aux).reshape(-1)
        if aux_q.size != q.shape[0]:
            raise ValueError(f"apply_postprocess: aux has {aux_q.size} values for {q.shape[0]} classes")
    out = np.empty(q.shape, dtype=np.uint8)
    for c, p in enumerate(params):
        out[c] = _class_map(q[c], p, None if aux_q is None else int(aux_q[c]))
    return out


def apply_postprocess_batch(
    q: np.ndarray, params: list[ClassParams], aux: np.ndarray | None = None, exclusive: bool = False
) -> np.ndarray:
    """Batched ``apply_postprocess``: uint8 [N, C, H, W] (+ aux float [N, C]) -> uint8 [N, C, H, W]."""
    q = np.asarray(q)
    if q.ndim != 4:
        raise ValueError(f"apply_postprocess_batch: expected [N, C, H, W], got shape {q.shape}")
    if aux is not None:
        aux = np.asarray(aux)
        if aux.shape != q.shape[:2]:
            raise ValueError(f"apply_postprocess_batch: aux shape {aux.shape}, expected {q.shape[:2]}")
    out = np.empty(q.shape, dtype=np.uint8)
    for i in range(q.shape[0]):
        out[i] = apply_postprocess(q[i], params, None if aux is None else aux[i], exclusive)
    return out
