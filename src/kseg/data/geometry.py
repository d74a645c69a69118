"""Fitting images to the model's input size and undoing it on predictions.

``fit_*`` run on numpy images before augmentation; ``restore`` runs on batched torch
probabilities after the model. Both use ``pad_offsets`` so the crop is the exact inverse of the pad.
Every resize is centre-aligned (pixel grids aligned on their outer edges): images by area/linear,
probabilities by bilinear (``align_corners=False``), masks by ``resize_masks`` (at-least-half coverage),
so a training mask, its image and the restored prediction stay on the same pixels at any size.
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
    """[H, W, K] float32 -> [h, w, K] at ``data.image_size`` (bilinear/area resize or reflect pad)."""
    th, tw = cfg.data.image_size
    h, w = image.shape[:2]
    if (h, w) == (th, tw):
        return image
    if cfg.data.resize == "pad":
        top, bottom, left, right = pad_offsets((h, w), (th, tw))
        return cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_REFLECT_101)
    interp = cv2.INTER_AREA if th * tw < h * w else cv2.INTER_LINEAR
    if image.ndim == 3:  # any channel count (2.5D stacks, multi-frame arrays)
        return _cv_resize(image, (th, tw), interp)
    return cv2.resize(image, (tw, th), interpolation=interp)[..., None]


def fit_mask(mask: np.ndarray, cfg: Config) -> np.ndarray:
    """[H, W, C] uint8 -> [h, w, C] (centre-aligned ``resize_masks``, or reflect pad like the image)."""
    th, tw = cfg.data.image_size
    h, w = mask.shape[:2]
    if (h, w) == (th, tw):
        return mask
    if cfg.data.resize == "pad":
        top, bottom, left, right = pad_offsets((h, w), (th, tw))
        out = cv2.copyMakeBorder(mask, top, bottom, left, right, cv2.BORDER_REFLECT_101)
    else:
        out = resize_masks(mask, (th, tw), exclusive=cfg.competition.exclusive)
    return out if out.ndim == 3 else out[..., None]


_FULL = 254  # a whole pixel's coverage in uint8 arithmetic: even, so exactly half a pixel is 127
_CV_CHANNELS = 4  # cv2.resize(INTER_AREA) takes at most 4 channels per call


def _cv_resize(x: np.ndarray, size: tuple[int, int], interp: int) -> np.ndarray:
    """cv2.resize of [H, W, C] to [h, w, C], in groups of the channels cv2 accepts (cv2.mixChannels)."""
    dsize, (h, w, c) = (size[1], size[0]), x.shape
    if c <= _CV_CHANNELS:
        return cv2.resize(np.ascontiguousarray(x), dsize, interpolation=interp).reshape(size[0], size[1], c)
    parts = [np.empty((h, w, min(_CV_CHANNELS, c - i)), x.dtype) for i in range(0, c, _CV_CHANNELS)]
    cv2.mixChannels([np.ascontiguousarray(x)], parts, [i for k in range(c) for i in (k, k)])
    out = [cv2.resize(p, dsize, interpolation=interp).reshape(size[0], size[1], -1) for p in parts]
    return np.concatenate(out, axis=2)


def mask_coverage(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H, W, C] masks (0 / non-0) -> uint8 [h, w, C]: 254 x the share of each pixel at ``size``
    that is foreground, centre-aligned like ``restore`` (grids aligned on their outer edges).

    Axes that shrink take the exact area overlap (cv2.INTER_AREA, to 1/508); axes that grow then take
    the old pixel under each new pixel's centre (cv2.INTER_NEAREST_EXACT: OpenCV's INTER_AREA misplaces
    whole rows when it upscales at factors such as 1.3, where pixel edges coincide).
    """
    h, w = mask.shape[:2]
    x = cv2.threshold(mask.reshape(h, -1), 0, _FULL, cv2.THRESH_BINARY)[1].reshape(mask.shape)  # -> 0/254
    shrunk = (min(h, size[0]), min(w, size[1]))
    if shrunk != (h, w):
        x = _cv_resize(x, shrunk, cv2.INTER_AREA)
    return x if shrunk == size else _cv_resize(x, size, cv2.INTER_NEAREST_EXACT)


def _exclusive(cov: np.ndarray) -> np.ndarray:
    """Coverage uint8 [h, w, C] (254 = whole pixel) -> one-hot uint8 [h, w, C]: the class covering most
    of each pixel when it covers at least as much as the background; ties go to the lower class index.

    Planar [C, h, w] arithmetic (numpy reduces a short last axis several times slower): each class's
    coverage is shifted left and its inverted index put in the low bits, so one max finds the winner.
    """
    c = cov.shape[2]
    bits = max(1, (c - 1).bit_length())
    low = (1 << bits) - 1
    planes = np.stack(cv2.split(cov)) if c > 1 else cov.transpose(2, 0, 1)
    ranks = (low - np.arange(c, dtype=np.uint16)).reshape(-1, 1, 1)
    top = ((planes.astype(np.uint16) << bits) | ranks).max(axis=0)  # coverage first, then the lower index
    wins = (top >> bits) + planes.sum(axis=0, dtype=np.uint16) >= _FULL  # top >= background = 254 - sum
    onehot = ((low - (top & low)) == np.arange(c, dtype=np.uint16).reshape(-1, 1, 1)) & wins
    return cv2.merge(list(onehot.view(np.uint8))).reshape(cov.shape)


def resize_masks(mask: np.ndarray, size: tuple[int, int], exclusive: bool = False) -> np.ndarray:
    """Centre-aligned resize of [H, W] or [H, W, C] 0/1 uint8 masks to ``size`` (H, W), up or down.

    Rule (``mask_coverage``): along an axis that shrinks, a new pixel is foreground when at least half of
    its area is (exactly half counts); along an axis that grows, it copies the old pixel under its centre
    (which covers at least half of it). Pixel grids are aligned on their outer edges, as
    ``fit_image`` (area/linear) and ``restore`` (bilinear, ``align_corners=False``) align images, so a
    mask stays on its image. Upscaling repeats each pixel under the new pixels' centres; downscaling keeps
    a structure at least half a new pixel wide: a 1-pixel line survives a 2x downscale (1 new pixel wide,
    where the image shows it at half contrast) and vanishes beyond 2x, as it fades in the image.
    ``exclusive`` (one-hot classes, ``competition.exclusive``): each pixel goes to the class or background
    covering most of it, ties to a class ahead of the background, then to the lower class index (the
    order of ``losses.index_target``), so no pixel is claimed twice.
    """
    size = (int(size[0]), int(size[1]))
    if mask.shape[:2] == size:
        return mask
    m = mask if mask.ndim == 3 else mask[..., None]
    if size[0] >= m.shape[0] and size[1] >= m.shape[1]:  # only upscaling: copies keep one-hot masks one-hot
        out = _cv_resize(m, size, cv2.INTER_NEAREST_EXACT)
    elif not exclusive:
        out = (mask_coverage(m, size) >= _FULL // 2).view(np.uint8)
    else:
        out = _exclusive(mask_coverage(m, size))
    return out if mask.ndim == 3 else out[..., 0]


def submission_size(cfg: Config, native: tuple[int, int]) -> tuple[int, int]:
    """(H, W) that masks of an image of ``native`` size are encoded at in submissions and OOF."""
    sub = cfg.competition.submission_size
    return (int(sub[0]), int(sub[1])) if sub else (int(native[0]), int(native[1]))


def oof_size(cfg: Config, native: tuple[int, int]) -> tuple[int, int]:
    """(H, W) the OOF predictions of an image of ``native`` size are stored, scored and tuned at:
    ``competition.oof_size`` (one shape for a fold whose images differ in size), else the submission size."""
    size = cfg.competition.oof_size
    return (int(size[0]), int(size[1])) if size else submission_size(cfg, native)


def _crop_padding(
    probs: torch.Tensor, size: tuple[int, int], cfg: Config, native_size: tuple[int, int] | None
) -> torch.Tensor:
    """With ``data.resize=pad``: [..., h, w] cropped to the image of ``native_size`` (default ``size``)."""
    if cfg.data.resize != "pad":
        return probs
    nat = tuple(int(s) for s in (native_size or size))
    top, _, left, _ = pad_offsets(nat, tuple(probs.shape[-2:]))  # type: ignore[arg-type]
    return probs[..., top : top + nat[0], left : left + nat[1]]


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
    probs = _crop_padding(probs, size, cfg, native_size)
    if tuple(probs.shape[-2:]) != size:
        probs = resize_bilinear(probs.float(), size)
    return probs


def restore_quantized(
    probs: torch.Tensor, size: tuple[int, int], cfg: Config, native_size: tuple[int, int] | None = None
) -> np.ndarray:
    """``quantize(restore(probs, ...))`` as uint8 [N, C, H, W], cheaper on the CPU: [N, C, h, w] probs in [0, 1].

    On the CPU the probabilities are quantized at the model size and resized in uint8 (OpenCV's fixed-point
    bilinear, same pixel centres): every value is within one grey level (1/255) of the float path, so only a
    pixel whose float value lies next to a threshold level can change side. At Carvana's 1918x1280 it costs a
    fifteenth of the float resize. Elsewhere (CUDA) it is exactly ``quantize(restore(...))``.
    """
    from kseg.postprocess import quantize  # kseg.postprocess does not import geometry; kept lazy all the same

    if probs.device.type != "cpu":
        return quantize(restore(probs, size, cfg, native_size))
    size = (int(size[0]), int(size[1]))
    probs = _crop_padding(probs, size, cfg, native_size)
    n, c, h, w = probs.shape
    small = quantize(probs.detach().reshape(n * c, h, w))
    if (h, w) == size:
        return small.reshape(n, c, h, w)
    out = np.empty((n * c, size[0], size[1]), np.uint8)
    for k in range(n * c):  # one call per plane (image x class)
        cv2.resize(small[k], (size[1], size[0]), dst=out[k], interpolation=cv2.INTER_LINEAR)
    return out.reshape(n, c, size[0], size[1])


def resize_bilinear(probs: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[N, C, h, w] float32 -> [N, C, H, W] bilinear with half-pixel centres (F.interpolate, align_corners=False).

    On the CPU OpenCV resizes plane by plane (several times faster than torch at Carvana's 1918x1280; values
    agree within 1e-4), elsewhere torch.
    """
    if probs.device.type != "cpu":
        return F.interpolate(probs, size=size, mode="bilinear", align_corners=False)
    n, c, h, w = probs.shape
    src = probs.detach().reshape(n * c, h, w).numpy()
    out = torch.empty(n * c, size[0], size[1], dtype=torch.float32)
    dst = out.numpy()
    for k in range(n * c):  # one call per plane (image x class), not per pixel
        cv2.resize(np.ascontiguousarray(src[k]), (size[1], size[0]), dst=dst[k], interpolation=cv2.INTER_LINEAR)
    return out.reshape(n, c, size[0], size[1])
