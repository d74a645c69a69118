"""Checks ``kseg train`` runs before any work, so a typo or a full disk fails in seconds, not after an epoch.

``check_names(cfg)`` builds what the config names (encoder + architecture, augment pipeline, loss,
optimizer, schedule) and fails with the key, the value and the valid choices. ``check_weights(cfg)`` finds
the pretrained encoder weights in the local cache (downloading them when online) and, offline with an empty
cache, fails naming the encoder, the weights and the remedies. ``check_output(cfg, folds)``
fails with the path when ``runs/<exp>/`` cannot be written (read-only, not a folder) or its disk lacks
room for the checkpoints and OOF arrays of ``folds``. ``remove_stale_temps`` deletes the temp files a
killed atomic write leaves next to its target.
"""

from __future__ import annotations

import dataclasses
import difflib
import errno
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from kseg.config import Config
from kseg.layout import BEST, LAST, METRICS_CSV, OOF_FILE, OOF_IDS_FILE
from kseg.typed import ConfigError, validate

log = logging.getLogger(__name__)

ARTEFACTS = (BEST, LAST, OOF_FILE, METRICS_CSV, OOF_IDS_FILE)  # a fold folder's files a training run writes
# optimizer tensors per parameter in last.pt (exp_avg + exp_avg_sq for the Adam family, momentum buffer ...)
OPTIMIZER_SLOTS = {"adam": 2, "adamw": 2, "sgd": 1, "rmsprop": 2}
MARGIN = 1.1


class OutputError(OSError, ValueError):
    """The output folder cannot take the run (read-only, not a folder, disk full); names the path.

    A ``ValueError`` too, so ``kseg`` reports it as a one-line error (exit 1) like config errors.
    """


def check_encoder(name: str) -> None:
    """Raise ``ConfigError`` naming ``model.encoder`` when smp (or timm via ``tu-``) has no such encoder."""
    import segmentation_models_pytorch as smp

    names = smp.encoders.get_encoder_names()
    if name in names:
        return
    if name.startswith("tu-"):
        import timm

        if timm.is_model(name[3:]):
            return
        close = difflib.get_close_matches(name[3:], timm.list_models(), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join('tu-' + c for c in close)}?" if close else ""
        raise ConfigError(
            f"model.encoder: {name!r}: timm has no model {name[3:]!r}{hint} (valid: tu-<timm.list_models()>)"
        )
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"model.encoder: {name!r} is not one of the {len(names)} smp encoders{hint} "
        "(valid: segmentation_models_pytorch.encoders.get_encoder_names(), or tu-<any timm model>)"
    )


def check_values(cfg: Config) -> None:
    """The value rules declared at each config field (run on load; again here for configs built in code).

    Cross-field rules (``Config``, ``TrainConfig.__post_init__``) run whenever a config is constructed.
    """
    validate(cfg)


def check_input_size(cfg: Config, model: torch.nn.Module) -> None:
    """``data.image_size`` divisible by the encoder's output stride where the smp model requires it."""
    net = getattr(model, "net", model)
    stride = getattr(getattr(net, "encoder", None), "output_stride", None)
    if getattr(net, "requires_divisible_input_shape", False) and stride:
        size = list(cfg.data.image_size)
        if any(s % stride for s in size):
            fit = [-(-s // stride) * stride for s in size]
            raise ConfigError(
                f"data.image_size: {size} is not divisible by {stride}, the output stride of "
                f"{cfg.model.arch}/{cfg.model.encoder}; use e.g. {fit} (with data.resize=pad images "
                "are reflect-padded up to it)"
            )


def check_names(cfg: Config) -> torch.nn.Module:
    """Build every named component of ``cfg`` once (model without pretrained weights); returns the model."""
    from kseg.data.dataset import build_augment
    from kseg.losses import build_loss
    from kseg.models import build_model, is_weights_file
    from kseg.optim import build_optimizer, build_scheduler

    check_encoder(cfg.model.encoder)
    offline = cfg.replace(model=dataclasses.replace(cfg.model, encoder_weights=None))
    weights = cfg.model.encoder_weights
    if weights is not None and is_weights_file(weights) and not Path(weights).is_file():
        raise FileNotFoundError(f"model.encoder_weights: weights file not found: {weights}")
    model = build_model(offline)
    check_input_size(cfg, model)
    build_augment(cfg)
    build_loss(cfg)
    optimizer = build_optimizer(cfg, model)  # its parameter groups, as training builds them
    build_scheduler(cfg, optimizer, steps_per_epoch=1)
    return model


def check_weights(cfg: Config) -> None:
    """Pretrained ``model.encoder_weights`` are loadable now (cache or download), not after the data is read.

    Raises ``kseg.models.WeightsUnavailableError`` offline with an empty cache (names encoder, weights, remedies).
    """
    from kseg.models import fetch_encoder_weights

    fetch_encoder_weights(cfg)


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _writable(folder: Path) -> bool:
    """Writable by us and not marked read-only (root ignores permissions, so the mode bits count too)."""
    return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)


def check_writable(folder: Path) -> None:
    """Raise ``OutputError`` naming ``folder`` unless it (or the ancestor it would be created in) takes a file."""
    base = _existing_ancestor(folder)
    if not base.is_dir():
        raise OutputError(errno.ENOTDIR, f"output path {base} is not a folder (runs_dir / experiment name)", str(base))
    if not _writable(base):
        raise OutputError(
            errno.EACCES,
            f"output folder {base} is read-only: make it writable or set runs_dir= to a writable folder",
            str(base),
        )
    probe = base / f".kseg-write-probe-{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise OutputError(
            e.errno,
            f"cannot write to output folder {base} ({e.strerror}): free space or set runs_dir= to another folder",
            str(base),
        ) from e
    finally:
        probe.unlink(missing_ok=True)


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def estimate_bytes(cfg: Config, model: torch.nn.Module, val_sizes: dict[int, int]) -> int:
    """Disk the artefacts of folds ``val_sizes`` ({fold: val images}) need at their peak, with a margin.

    Per fold: best.pt (state dict) + last.pt (state dict + optimizer slots + EMA) + oof.npy uint8
    (N, C, H, W); while a fold writes, one more last.pt and oof.npy exist as temp files.
    """
    state = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    last = state + OPTIMIZER_SLOTS.get(cfg.optim.name, 2) * params + (state if cfg.train.ema else 0)
    size = cfg.competition.submission_size or cfg.competition.image_size
    per_image = cfg.competition.num_classes * size[0] * size[1] if size else 0
    folds = [state + last + n * per_image for n in val_sizes.values()]
    peak = max((last + n * per_image for n in val_sizes.values()), default=0)
    return int((sum(folds) + peak) * MARGIN)


def check_space(folder: Path, need: int, freed: int = 0) -> None:
    """Raise ``OutputError`` (ENOSPC) naming ``folder`` when its disk has less than ``need - freed`` bytes free."""
    base = _existing_ancestor(folder)
    free = shutil.disk_usage(base).free
    if free + freed < need:
        raise OutputError(
            errno.ENOSPC,
            f"not enough disk space for {folder}: training needs about {_human(need)} "
            f"(checkpoints + OOF), {_human(free)} free on {base}; free space or set runs_dir= "
            "to another disk",
            str(folder),
        )


def check_output(cfg: Config, folds: Sequence[int], model: torch.nn.Module) -> None:
    """``runs/<exp>/`` is writable and its disk holds the artefacts of ``folds`` (existing ones are replaced)."""
    from kseg.data.folds import read_folds

    check_writable(cfg.run_dir)
    table = read_folds(cfg)
    val_sizes = {k: int((table.fold == k).sum()) for k in folds}
    freed = sum(
        (cfg.fold_dir(k) / a).stat().st_size for k in folds for a in ARTEFACTS if (cfg.fold_dir(k) / a).is_file()
    )
    check_space(cfg.run_dir, estimate_bytes(cfg, model, val_sizes), freed)


def preflight(cfg: Config, folds: Sequence[int]) -> None:
    """Every check above; raises before any data is read or any artefact written."""
    check_values(cfg)
    model = check_names(cfg)
    check_weights(cfg)
    check_output(cfg, folds, model)


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the temp files (``.<artefact>.<random>.tmp|.npy``) that a killed atomic write left in ``folder``."""
    removed = []
    if folder.is_dir():
        for p in folder.iterdir():
            if p.is_file() and any(p.name.startswith(f".{a}.") for a in ARTEFACTS) and p.suffix in (".tmp", ".npy"):
                p.unlink(missing_ok=True)
                removed.append(p)
    if removed:
        log.info("removed %d temp file(s) of an interrupted write in %s", len(removed), folder)
    return removed
