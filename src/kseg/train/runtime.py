"""How tensors are run during training and validation: device, AMP (dtype), channels_last, compile, progress bars."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from kseg.config import Config
from kseg.data.pixels import model_input
from kseg.train.dist import DistInfo


@dataclass(frozen=True)
class Runtime:
    """How tensors are run: device, AMP (CUDA only), channels_last (CUDA only), progress bars."""

    device: torch.device
    amp: bool = False
    channels_last: bool = False
    amp_dtype: torch.dtype = torch.float16  # bfloat16 needs no GradScaler
    progress: bool = True
    normalize: str = "unit"  # data.normalize, applied on the device by ``images`` (unit: float batches as they are)

    @classmethod
    def from_config(cls, cfg: Config, info: DistInfo) -> Runtime:
        cuda = info.device.type == "cuda"
        return cls(
            info.device,
            amp=cfg.train.amp and cuda,
            channels_last=cfg.train.channels_last and cuda,
            amp_dtype=amp_dtype(cfg.train.amp_dtype, info.device),
            progress=info.is_main,
            normalize=cfg.data.normalize,
        )

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.amp)

    @property
    def needs_scaler(self) -> bool:
        """float16 AMP needs loss scaling (a GradScaler); bfloat16 has float32's range and does not."""
        return self.amp and self.amp_dtype == torch.float16

    def describe(self) -> str:
        """One line for the log: device, AMP dtype, channels_last."""
        amp = f"AMP {str(self.amp_dtype).removeprefix('torch.')}" if self.amp else "no AMP"
        return f"{self.device}, {amp}{', channels_last' if self.channels_last else ''}"

    def masks(self, batch: dict[str, Any]) -> torch.Tensor:
        """Target masks float32 [N, C, H, W] on the device (the loader ships them as uint8 0/1)."""
        return batch["mask"].to(self.device, non_blocking=True).float()

    def images(self, batch: dict[str, Any]) -> torch.Tensor:
        """Normalised float32 images [N, 3, H, W] on the device (channels_last when on) from the loader's
        uint8/uint16/float pixels: one non-blocking copy, one fused op (``kseg.data.pixels.model_input``)."""
        return model_input(batch["image"], self.normalize, self.device, self.channels_last)


def amp_dtype(name: str, device: torch.device) -> torch.dtype:
    """The autocast dtype of ``train.amp_dtype`` on ``device``: auto = bfloat16 where supported, else float16."""
    if name == "bfloat16":
        return torch.bfloat16
    if name == "float16":
        return torch.float16
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def maybe_compile(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """``model.compile()`` in place when ``enabled`` (same module, same state_dict keys; compiled on first call)."""
    if enabled:
        model.compile()
    return model


def amp_step(scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer) -> bool:
    """``scaler.step`` + ``scaler.update``; True when the scaler silently skipped the step (inf/NaN gradients).

    A skipped step shows as a lowered scale; a disabled scaler (CPU, no AMP) never skips.
    """
    if not scaler.is_enabled():
        scaler.step(optimizer)
        scaler.update()
        return False
    before = scaler.get_scale()
    scaler.step(optimizer)
    scaler.update()
    return scaler.get_scale() < before
