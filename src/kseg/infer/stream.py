"""Streaming test-set prediction: one batch in memory at a time, one image out at a time."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from kseg.config import Config
from kseg.data.geometry import oof_size, restore, restore_quantized, submission_size
from kseg.data.pixels import model_input
from kseg.infer.ensemble import Ensemble
from kseg.infer.pseudo import confident_share

log = logging.getLogger(__name__)

__all__ = ["Prediction", "cpu_threads", "in_background", "predict_images", "restore_batch", "torch_threads"]

T = TypeVar("T")


@dataclass
class Prediction:
    """Ensemble output for one test image, at the submission size."""

    image_id: str
    q: np.ndarray  # uint8 [C, H, W] = quantize(probabilities)
    aux: np.ndarray | None  # float32 [C] aux-head probabilities, None without aux heads
    native_size: tuple[int, int]  # (H, W) of the image file
    confident: np.ndarray | None = None  # float32 [C] share of confident pixels (with ``confidence``)


def restore_batch(
    probs: torch.Tensor, sizes: torch.Tensor, cfg: Config, oof: bool = False, quantized: bool = False
) -> list:
    """probs [N, C, h, w] at the model size -> N tensors [C, H_i, W_i] at each image's submission size
    (``oof``: at the OOF size, ``kseg.data.geometry.oof_size``); ``quantized``: N uint8 arrays
    [C, H_i, W_i] from ``restore_quantized`` (within one grey level of quantizing the float restore).

    ``sizes`` is LongTensor [N, 2] of native (H, W); images of equal size are restored together.
    """
    native = [tuple(int(v) for v in s) for s in sizes.tolist()]
    out: list = [None] * len(native)
    for size in dict.fromkeys(native):
        idx = [i for i, s in enumerate(native) if s == size]
        sub = oof_size(cfg, size) if oof else submission_size(cfg, size)
        fn = restore_quantized if quantized else restore
        restored = fn(probs[idx], sub, cfg, native_size=size)
        for j, i in enumerate(idx):
            out[i] = restored[j]
    return out


def cpu_threads(requested: int, cores: int, workers: int) -> int:
    """torch intra-op threads for predicting on the CPU: ``requested`` (> 0), else the ``cores`` that the
    ``workers`` loader processes leave free, at least 1 (a tiny model gains little from a second thread
    while decoding needs every core)."""
    return requested if requested > 0 else max(1, cores - workers)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """``torch.set_num_threads(n)`` for the block, restored after it (None: unchanged)."""
    if n is None or n == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _threads(ensemble: Ensemble, loaders: Sequence[DataLoader]) -> int | None:
    """The torch threads of this predict (None on CUDA: the GPU does the model's work)."""
    if ensemble.device.type != "cpu":
        return None
    workers = sum(loader.num_workers for loader in loaders)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = cpu_threads(ensemble.cfg.predict.cpu_threads, cores, workers)
    log.info("predict on the CPU with %d torch thread(s) beside %d loader worker(s)", n, workers)
    return n


def _loaders(
    ensemble: Ensemble, image_ids: Sequence[str], image_dir: Path, batch_size: int, num_workers: int | None
) -> list[DataLoader]:
    """One test DataLoader per preprocessing group, same ids in the same order (never shuffled)."""
    from kseg.data.dataset import make_loader
    from kseg.data.tiles import dataset_type

    out = []
    for g in ensemble.groups:
        cfg = g.cfg
        if num_workers is not None:
            cfg = cfg.replace(data=dataclasses.replace(cfg.data, num_workers=num_workers))
        ds = dataset_type(cfg)(cfg, list(image_ids), train=False, image_dir=image_dir)  # tile ids with tile.size
        out.append(make_loader(ds, cfg, train=False, batch_size=batch_size))
    return out


_DONE = object()


def in_background(make: Callable[[], Iterator[T]], depth: int = 2) -> Iterator[T]:
    """Items of ``make()`` produced in a daemon thread, at most ``depth`` ahead of the consumer.

    Torch, OpenCV and numpy release the GIL in their kernels, so the producer's work (loader + model) overlaps
    the consumer's (restore, encode, write) on separate cores. An exception in the producer is raised here;
    closing this generator stops the producer at its next item.
    """
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in make():
                if not put(item):
                    return
            put(_DONE)
        except BaseException as e:  # noqa: BLE001  (handed to the consumer and raised there)
            put(e)

    thread = threading.Thread(target=produce, name="kseg-predict-model", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=10)


def _model_outputs(ensemble: Ensemble, batches: Iterable[Sequence[dict]]) -> Iterator[tuple]:
    """Per batch: (ids, native sizes [N, 2], probs [N, C, h, w] per group, aux sum or None, aux weight)."""
    for group_batches in batches:
        ids = list(group_batches[0]["id"])
        outputs, aux_acc, aux_w = [], None, 0.0
        for gi, (g, batch) in enumerate(zip(ensemble.groups, group_batches, strict=True)):
            if list(batch["id"]) != ids:
                raise RuntimeError("test loaders of the ensemble groups went out of step")
            x = model_input(batch["image"], g.cfg.data.normalize, ensemble.device)
            probs, aux, w = ensemble.predict(x, gi)
            outputs.append(probs)
            if aux is not None:
                aux_acc = aux if aux_acc is None else aux_acc + aux
                aux_w += w
        yield ids, group_batches[0]["size"], outputs, aux_acc, aux_w


def predict_images(
    ensemble: Ensemble,
    image_ids: Sequence[str],
    image_dir: str | Path,
    batch_size: int | None = None,
    num_workers: int | None = None,
    confidence: float | None = None,
    progress: bool = True,
    oof: bool = False,
) -> Iterator[Prediction]:
    """Predict ``image_ids`` (files in ``image_dir``) with the ensemble, yielding one image at a time.

    Probabilities of every group of members are restored to the submission size
    (``competition.submission_size``, else the image's own size; ``oof``: the OOF size), summed with the
    ensemble weights, then quantized to uint8. With ``confidence`` the share of confident pixels per class is computed
    on the float probabilities (for pseudo-labels). A single group without ``confidence`` is restored in uint8
    (``restore_quantized``: within one grey level of the float path, several times cheaper). Images skipped by
    the dataset (``data.on_bad_image=skip``) are not yielded.
    """
    bs = batch_size or ensemble.cfg.predict.batch_size
    loaders = _loaders(ensemble, image_ids, Path(image_dir), bs, num_workers)
    total = len(loaders[0])
    batches = tqdm(zip(*loaders, strict=True), total=total, desc="predict", unit="batch", disable=not progress)
    with torch_threads(_threads(ensemble, loaders)):
        yield from _predictions(ensemble, batches, oof, confidence)


def _predictions(
    ensemble: Ensemble, batches: Iterable[Sequence[dict]], oof: bool, confidence: float | None
) -> Iterator[Prediction]:
    """``predict_images``' loop over the loaders' batches."""
    # One group and no confidence: restore in uint8 (float sums across groups and confidence need the floats)
    quantized = len(ensemble.groups) == 1 and confidence is None
    # The model runs one batch ahead in a thread while this one restores and the caller encodes and writes.
    for ids, sizes, outputs, aux_acc, aux_w in in_background(lambda: _model_outputs(ensemble, batches), depth=2):
        aux_np = (aux_acc / aux_w).float().cpu().numpy() if aux_acc is not None else None
        if quantized:
            qs, shares = restore_batch(outputs[0], sizes, ensemble.groups[0].cfg, oof, quantized=True), None
        else:
            qs, shares = _float_restore(ensemble, outputs, sizes, oof, confidence)
        for i, image_id in enumerate(ids):
            yield Prediction(
                image_id=str(image_id),
                q=qs[i],
                aux=None if aux_np is None else aux_np[i],
                native_size=(int(sizes[i, 0]), int(sizes[i, 1])),
                confident=None if shares is None else shares[i],
            )


def _float_restore(
    ensemble: Ensemble, outputs: list[torch.Tensor], sizes: torch.Tensor, oof: bool, confidence: float | None
) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Each group's probs restored in float, summed with the ensemble weights (already in the probs),
    clamped and quantized: (uint8 [C, H, W] per image, float32 [C] confident share per image or None)."""
    from kseg.postprocess import quantize

    acc: list[torch.Tensor] | None = None
    for gi, probs in enumerate(outputs):
        restored = restore_batch(probs, sizes, ensemble.groups[gi].cfg, oof)
        acc = restored if acc is None else [a + r for a, r in zip(acc, restored, strict=True)]
    assert acc is not None
    ps = [a.clamp_(0.0, 1.0) for a in acc]
    shares = None if confidence is None else [confident_share(p, confidence).cpu().numpy() for p in ps]
    return [quantize(p) for p in ps], shares
