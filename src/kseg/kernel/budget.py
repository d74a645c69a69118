"""Kernel run-time budget: will the shipped ensemble predict the test set within the competition's time limit?

Code competitions cap a kernel's run time (``kernel.time_limit_hours``, commonly 9). ``kseg kernel build``
measures what one test image costs here and scales it to the whole test set::

    total = startup + images * (sum over runs of folds * views * forward_s / speedup + io_s)

``forward_s`` is one model forward of one image at the run's input size, timed on this machine (the run's
architecture with random weights: folds share it and weights do not change the cost); ``views`` the TTA
views; ``io_s`` the per-image CPU work around the model (read, resize, restore to the submission size, RLE
encode); ``speedup`` is ``kernel.gpu_speedup`` when the forward was timed on a CPU for a GPU kernel
(``kernel.enable_gpu``), else 1. The build refuses an ensemble whose estimate exceeds the limit unless forced.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from kseg.competition import list_test_ids, list_train_ids
from kseg.config import Config, read_saved_config
from kseg.data.inputs import ImagePaths, InputReader
from kseg.infer.ensemble import resolve_device, tta_proba
from kseg.layout import RunLayout
from kseg.tta import get_tta

log = logging.getLogger(__name__)

__all__ = [
    "MemberCost",
    "RunTimeEstimate",
    "KernelBudgetError",
    "estimate_run_time",
    "check_budget",
    "best_seconds",
    "forward_seconds",
    "io_sample",
]

_IO_SAMPLES = 8  # local test images timed for the per-image CPU work


class KernelBudgetError(ValueError):
    """The kernel's estimated run time exceeds ``kernel.time_limit_hours``."""


@dataclass(frozen=True)
class MemberCost:
    """One shipped run: its folds, TTA views and measured seconds per image of one forward."""

    run: str
    folds: int
    views: int
    forward_s: float

    @property
    def seconds_per_image(self) -> float:
        """Model seconds per test image for this run, on the measuring device."""
        return self.folds * self.views * self.forward_s


@dataclass(frozen=True)
class RunTimeEstimate:
    """The arithmetic of the budget check (all times in seconds; see the module docstring)."""

    images: int
    members: tuple[MemberCost, ...]
    io_s: float
    speedup: float  # divides the model time; 1 when measured on the kernel's device
    startup_s: float
    limit_s: float
    device: str  # where forward_s was measured

    @property
    def model_s(self) -> float:
        """Model seconds per test image on the kernel's device."""
        return sum(m.seconds_per_image for m in self.members) / self.speedup

    @property
    def total_s(self) -> float:
        return self.startup_s + self.images * (self.model_s + self.io_s)

    @property
    def local_total_s(self) -> float:
        """The same estimate at this machine's speed (what a local rehearsal should take)."""
        return self.startup_s + self.images * (self.model_s * self.speedup + self.io_s)

    @property
    def fits(self) -> bool:
        return self.total_s <= self.limit_s

    def describe(self) -> str:
        """Lines for the build output: per run, the total beside the limit."""
        lines = [
            f"run-time estimate for {self.images} test images (forward timed on {self.device}"
            + (f", / kernel.gpu_speedup {self.speedup:g}" if self.speedup != 1 else "")
            + "):"
        ]
        for m in self.members:
            lines.append(
                f"  {m.run}: {m.folds} fold(s) x {m.views} view(s) x {1e3 * m.forward_s:.1f} ms/image"
                f" = {m.seconds_per_image * self.images / self.speedup / 3600:.2f} h"
            )
        lines.append(f"  read/resize/restore/encode: {1e3 * self.io_s:.1f} ms/image; startup {self.startup_s:.0f} s")
        verdict = "fits" if self.fits else "DOES NOT FIT"
        lines.append(
            f"  total {self.total_s / 3600:.2f} h of the {self.limit_s / 3600:g} h limit ({verdict}); "
            f"at this machine's speed {self.local_total_s:.0f} s"
        )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "model_s": self.model_s,
            "total_s": self.total_s,
            "local_total_s": self.local_total_s,
            "fits": self.fits,
        }


def best_seconds(fn: Callable[[], object], repeats: int = 2) -> float:
    """Best wall time of ``fn`` over ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _run_config(cfg: Config, run: str) -> Config:
    """``cfg`` for its own run, else the saved config of ``run`` (``runs/<run>/config.yaml``)."""
    if run == cfg.name:
        return cfg
    path = RunLayout(Path(cfg.runs_dir), run).config
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the run-time estimate needs the model of run {run!r}")
    return read_saved_config(path)


def forward_seconds(mcfg: Config, device: torch.device, batch: int, amp: bool) -> float:
    """Seconds per image of one forward (one TTA view) of ``mcfg``'s model at its input size on ``device``.

    The architecture is built with random weights: the cost is the same as the trained checkpoint's.
    """
    from kseg.models import build_model

    model = build_model(mcfg.replace(model=dataclasses.replace(mcfg.model, encoder_weights=None)))
    model.eval().to(device)
    h, w = mcfg.data.image_size
    x = torch.zeros(batch, 3, h, w, device=device)
    identity = get_tta("none")

    def run() -> None:
        with torch.inference_mode():
            tta_proba(model, x, identity, mcfg.competition.mode, amp and device.type == "cuda")
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return best_seconds(run) / batch


def _sample_ids(cfg: Config, limit: int) -> tuple[list[str], str]:
    """Up to ``limit`` local test ids and their folder, else (an empty sample submission, no test folder)
    the first training ids and theirs: the per-image read costs the same on either."""
    spec = cfg.competition
    try:
        ids = list_test_ids(spec, cfg.data_root)[:limit]
    except FileNotFoundError as e:
        log.info("run-time estimate: no local test images (%s)", e)
        ids = []
    if ids:
        return ids, spec.test_images
    try:
        ids = list_train_ids(spec, cfg.data_root, limit)
    except FileNotFoundError as e:
        log.info("run-time estimate: no local training images either (%s)", e)
    if ids:
        log.info("run-time estimate: no local test images, the per-image read is timed on %d training ones", len(ids))
    return ids, spec.train_images


def io_sample(cfg: Config, limit: int = _IO_SAMPLES) -> InputReader | None:
    """A reader of up to ``limit`` local inputs (test ids in ``list_test_ids`` order, else training ids),
    resolved as ``kseg predict`` resolves them (``competition.image_path`` templates in nested folders,
    ``competition.arrays`` record folders, ``competition.volume`` stacks); None when there are none."""
    spec = cfg.competition
    ids, folder = _sample_ids(cfg, limit)
    if not ids:
        return None
    paths = ImagePaths(spec, cfg.data_root / folder)
    return InputReader(spec, ids, [paths(i) for i in ids])


def _io_seconds(cfg: Config) -> float:
    """Per-image CPU work around the model, timed on up to ``_IO_SAMPLES`` local test inputs (0 without any)."""
    reader = io_sample(cfg)
    if reader is None:
        return 0.0
    spec = cfg.competition
    h, w = cfg.data.image_size

    def run() -> None:
        for i in range(len(reader.ids)):
            image = reader(i)  # float32 [H, W, K]
            small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA).reshape(h, w, -1)
            probs = cv2.resize(small[..., 0], image.shape[1::-1], interpolation=cv2.INTER_LINEAR)
            spec.rle.encode_batch(np.repeat((probs > 0.5)[None], spec.num_classes, axis=0))

    return best_seconds(run, repeats=1) / len(reader.ids)


def estimate_run_time(
    cfg: Config, shipped: dict[str, Sequence[int]], tta: str, images: int | None = None
) -> RunTimeEstimate:
    """Measure and scale the kernel's run time for ``shipped`` {run: folds} predicting with ``tta``.

    ``images`` None uses ``kernel.test_images``, else (0) the local test set's size.
    """
    k = cfg.kernel
    n = images if images is not None else (k.test_images or len(list_test_ids(cfg.competition, cfg.data_root)))
    device = resolve_device(cfg.train.device)
    batch = max(1, min(cfg.predict.batch_size, 4 if device.type == "cpu" else cfg.predict.batch_size))
    views = len(get_tta(tta))
    members = []
    for run, folds in shipped.items():
        forward = forward_seconds(_run_config(cfg, run), device, batch, cfg.predict.amp)
        members.append(MemberCost(run, len(folds), views, forward))
    speedup = k.gpu_speedup if (k.enable_gpu and device.type == "cpu") else 1.0
    return RunTimeEstimate(
        images=n,
        members=tuple(members),
        io_s=_io_seconds(cfg),
        speedup=speedup,
        startup_s=60.0 * k.startup_minutes,
        limit_s=3600.0 * k.time_limit_hours,
        device=str(device),
    )


def check_budget(estimate: RunTimeEstimate, force: bool) -> list[str]:
    """Warnings for an estimate over the limit when ``force`` (raises KernelBudgetError otherwise), or of no images."""
    if estimate.images == 0:
        return [
            "run-time estimate for 0 test images: the local test set is empty (a sample submission without rows, "
            "as UW-Madison's public one, which Kaggle fills only when it scores the kernel); set "
            "kernel.test_images to the hidden test set's size for a real estimate"
        ]
    if estimate.fits:
        return []
    msg = (
        f"estimated kernel run time {estimate.total_s / 3600:.2f} h exceeds kernel.time_limit_hours="
        f"{estimate.limit_s / 3600:g}: ship fewer runs, folds or TTA views\n{estimate.describe()}"
    )
    if not force:
        raise KernelBudgetError(msg + "\n(--force builds it anyway)")
    return [msg + " (built anyway: --force)"]
