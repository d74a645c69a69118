"""Pixels from file to model: integer through the loader, normalised on the device in one fused op.

Images travel decode -> fit -> augment -> collate in the file's own integer type (uint8, or uint16 for 16-bit
files): a quarter (half) of float32's bytes through resizing, augmentation, worker queues and pinned memory.
``model_input`` then computes ``(x / scale - mean) / std`` on the device as one ``addcmul`` (``x * a + b``,
``a = 1 / (scale * std)``, ``b = -mean / std``; scale 255, 65535, or 1 for float images), writing the
channels_last layout directly when asked. ``data.pixels=float`` keeps the former path: images become float32
in [0, 1] right after decoding, for augmentations that need float input.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "PIXEL_SCALES", "pixel_scale", "to_unit_float", "model_input"]

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
PIXEL_SCALES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}  # the value of full intensity
_TORCH_SCALES = {torch.uint8: 255.0, torch.uint16: 65535.0, torch.float32: 1.0}


def pixel_scale(dtype: np.dtype | torch.dtype) -> float:
    """Full-intensity value of an image dtype: 255 (uint8), 65535 (uint16), 1 (float32, already in [0, 1])."""
    scale = _TORCH_SCALES.get(dtype) if isinstance(dtype, torch.dtype) else PIXEL_SCALES.get(np.dtype(dtype), None)
    if scale is None and not isinstance(dtype, torch.dtype) and np.issubdtype(dtype, np.floating):
        scale = 1.0
    if scale is None:
        raise TypeError(f"unsupported image dtype {dtype} (expected uint8, uint16 or float32)")
    return scale


def to_unit_float(image: np.ndarray) -> np.ndarray:
    """[H, W, ch] uint8/uint16/float -> float32 in [0, 1] (float input passes through)."""
    scale = pixel_scale(image.dtype)
    if scale == 1.0:
        return image.astype(np.float32, copy=False)
    return np.multiply(image, np.float32(1.0 / scale), dtype=np.float32)


def _affine(normalize: str, scale: float, channels: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (a, b) float32 [1, K, 1, 1] with ``model value = pixel * a + b`` (imagenet or unit)."""
    if normalize == "imagenet":
        if channels != 3:
            raise ValueError(
                f"data.normalize=imagenet needs 3 channels (RGB in [0, 1]), but the input has {channels}; "
                "use data.normalize=max or unit"
            )
        mean, std = IMAGENET_MEAN.astype(np.float64), IMAGENET_STD.astype(np.float64)
    else:
        mean, std = np.zeros(channels), np.ones(channels)
    a = torch.tensor(1.0 / (scale * std), dtype=torch.float32, device=device).view(1, channels, 1, 1)
    b = torch.tensor(-mean / std, dtype=torch.float32, device=device).view(1, channels, 1, 1)
    return a, b


def model_input(
    x: torch.Tensor, normalize: str, device: torch.device | str | None = None, channels_last: bool = False
) -> torch.Tensor:
    """Batch [N, K, H, W] uint8/uint16/float32 -> normalised float32 on ``device`` (default: where ``x`` is).

    ``normalize``: imagenet ((p / scale - mean) / std, K = 3), unit (p / scale) or max (each image divided by
    its maximum when > 0). The host -> device copy is non-blocking (pinned batches overlap it with compute);
    imagenet and unit are one ``addcmul`` reading the integer pixels, so no float copy of the batch exists
    on the host.
    """
    device = torch.device(device) if device is not None else x.device
    scale = pixel_scale(x.dtype)
    x = x.to(device, non_blocking=True)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    if normalize == "max":
        x = x.float()
        top = x.amax(dim=(1, 2, 3), keepdim=True)
        return torch.div(x, torch.where(top > 0, top, torch.ones_like(top))).contiguous(memory_format=memory)
    if x.dtype == torch.uint16:  # few kernels take uint16 (CUDA): one widening copy, on the device
        x = x.float()
    a, b = _affine(normalize, scale, x.shape[1], device)
    out = torch.empty(x.shape, dtype=torch.float32, device=device, memory_format=memory)
    return torch.addcmul(b, x, a, out=out)
