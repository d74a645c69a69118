"""Fitting images to the model's input size and undoing it on predictions.

``fit_*`` run on numpy images before augmentation; ``restore`` runs on batched torch
probabilities after the model. Both use ``pad_offsets`` so the crop is the exact inverse of the pad.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from kseg.config import Config


def pad_offsets(native: tuple[int, int], target: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) padding that centres ``native`` (H, W) inside ``target``."""
    (h, w), (th, tw) = native, target
    if h > th or w > tw:
        raise ValueError(f"data.resize=pad: image {h}x{w} is larger than data.image_size {th}x{tw}")
    top, left = (th - h) // 2, (tw - w) // 2
    return top, th - h - top, left, tw - w - left


def fit_image(image: np.ndarray, cfg: Config) -> np.ndarray:
    """[H, W, ch] float32 -> [h, w, ch] at ``data.image_size`` (bilinear/area resize or reflect pad)."""
    th, tw = cfg.data.image_size
    h, w = image.shape[:2]
    if (h, w) == (th, tw):
        return image
    if cfg.data.resize == "pad":
        t, b, l, r = pad_offsets((h, w), (th, tw))
        return cv2.copyMakeBorder(image, t, b, l, r, cv2.BORDER_REFLECT_101)
    interp = cv2.INTER_AREA if th * tw < h * w else cv2.INTER_LINEAR
    out = cv2.resize(image, (tw, th), interpolation=interp)
    return out if out.ndim == 3 else out[..., None]


def fit_mask(mask: np.ndarray, cfg: Config) -> np.ndarray:
    """[H, W, C] uint8 -> [h, w, C] (nearest resize, or reflect pad like the image)."""
    th, tw = cfg.data.image_size
    h, w = mask.shape[:2]
    if (h, w) == (th, tw):
        return mask
    if cfg.data.resize == "pad":
        t, b, l, r = pad_offsets((h, w), (th, tw))
        out = cv2.copyMakeBorder(mask, t, b, l, r, cv2.BORDER_REFLECT_101)
    else:
        out = resize_masks(mask, (th, tw))
    return out if out.ndim == 3 else out[..., None]


def resize_masks(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of [H, W] or [H, W, C] uint8 masks to ``size`` (H, W)."""
    if mask.shape[:2] == tuple(size):
        return mask
    if mask.ndim == 3 and mask.shape[2] > 4:  # cv2.resize handles at most 512 channels; be safe
        return np.stack([resize_masks(mask[..., c], size) for c in range(mask.shape[2])], axis=-1)
    out = cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return out if out.ndim == mask.ndim else out[..., None]


def submission_size(cfg: Config, native: tuple[int, int]) -> tuple[int, int]:
    """(H, W) that masks of an image of ``native`` size are encoded at in submissions and OOF."""
    sub = cfg.competition.submission_size
    return (int(sub[0]), int(sub[1])) if sub else (int(native[0]), int(native[1]))


def restore(
    probs: torch.Tensor,
    size: tuple[int, int],
    cfg: Config,
    native_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Undo ``fit_image`` on predictions: [N, C, h, w] -> [N, C, H, W] at ``size``.

    With ``data.resize=pad`` the padding of an image of ``native_size`` (default ``size``) is cropped
    first; then probabilities are bilinearly resized to ``size`` when the sizes still differ.
    """
    size = (int(size[0]), int(size[1]))
    if cfg.data.resize == "pad":
        nat = tuple(int(s) for s in (native_size or size))
        t, _, l, _ = pad_offsets(nat, tuple(probs.shape[-2:]))  # type: ignore[arg-type]
        probs = probs[..., t : t + nat[0], l : l + nat[1]]
    if tuple(probs.shape[-2:]) != size:
        probs = F.interpolate(probs.float(), size=size, mode="bilinear", align_corners=False)
    return probs
