"""kseg.infer.stream: ``in_background`` (the model side of prediction runs ahead in a thread, bounded and safe),
``restore_batch`` and ``predict_images`` over the demo test set."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from kseg.config import Config
from kseg.infer.ensemble import Ensemble, Member
from kseg.infer.stream import in_background, predict_images

from _infer_support import LOG3, ConstModel, with_size


def test_items_arrive_in_order_at_most_depth_ahead() -> None:
    made: list[int] = []

    def make():
        for i in range(10):
            made.append(i)
            yield i

    seen = []
    for item in in_background(make, depth=2):
        time.sleep(0.01)  # a slow consumer: the producer waits for room instead of running away
        assert len(made) - len(seen) <= 2 + 2  # the queue (2), one blocked in put, the one being handed over
        seen.append(item)
    assert seen == list(range(10))


def test_producer_errors_are_raised_in_the_consumer() -> None:
    def make():
        yield 1
        raise RuntimeError("loader failed on image 7")

    got = []
    with pytest.raises(RuntimeError, match="loader failed on image 7"):
        for item in in_background(make):
            got.append(item)
    assert got == [1]


def test_closing_the_consumer_stops_the_producer() -> None:
    produced = threading.Event()
    count = []

    def make():
        for i in range(1000):
            count.append(i)
            produced.set()
            yield i

    gen = in_background(make, depth=1)
    assert next(gen) == 0
    gen.close()  # e.g. the submission writer failed
    n = len(count)
    time.sleep(0.3)
    assert len(count) == n < 10  # nothing more is produced
    assert not any(t.name == "kseg-predict-model" and t.is_alive() for t in threading.enumerate())


def test_restore_batch_quantized_matches_the_float_path_per_image_size() -> None:
    import numpy as np
    import torch

    from kseg.config import load_config
    from kseg.infer.stream import restore_batch
    from kseg.postprocess import quantize

    from conftest import REPO

    cfg = load_config(REPO / "configs/demo.yaml", ["data.image_size=[32, 48]", "competition.submission_size=null"])
    probs = torch.rand(3, 1, 32, 48, generator=torch.Generator().manual_seed(1))
    probs[1] = 1 - probs[1]  # no two images alike
    sizes = torch.tensor([[70, 41], [32, 48], [70, 41]])  # two sizes, one the model size itself
    floats = restore_batch(probs, sizes, cfg)
    quantized = restore_batch(probs, sizes, cfg, quantized=True)
    for i, (f, q) in enumerate(zip(floats, quantized, strict=True)):
        assert isinstance(q, np.ndarray) and q.dtype == np.uint8 and q.shape == (1, *sizes[i].tolist())
        assert np.abs(q.astype(int) - quantize(f)).max() <= (0 if i == 1 else 1)
    assert not np.array_equal(quantized[0], quantized[2])  # each image restored from its own probabilities


def test_predict_images_restores_and_quantizes(demo_cfg: Config, demo_root: Path) -> None:
    small = with_size(demo_cfg, (32, 64))
    big = with_size(demo_cfg, (64, 128))
    # two preprocessing groups (two model sizes), one experiment each: (0.75 + 0.25) / 2 = 0.5 -> q 128
    ms = [Member(ConstModel(LOG3), small, "s", 0), Member(ConstModel(-LOG3), big, "b", 0)]
    ens = Ensemble(demo_cfg, ms, tta="hflip")
    assert len(ens.groups) == 2
    ids = sorted(p.name for p in (demo_root / "test_images").iterdir())
    preds = list(predict_images(ens, ids, demo_root / "test_images", batch_size=4, progress=False, confidence=0.9))
    assert [p.image_id for p in preds] == ids
    for p in preds:
        assert p.q.shape == (4, 128, 256) and p.q.dtype == np.uint8
        assert np.all(p.q == 128)  # round(0.5 * 255) = 127.5 -> 128 (half to even)
        assert p.native_size == (128, 256)
        assert p.confident is not None and np.all(p.confident == 0.0)


def test_cpu_threads_leave_the_cores_to_the_loader_workers() -> None:
    import torch

    from kseg.infer.stream import cpu_threads, torch_threads

    assert cpu_threads(0, cores=2, workers=2) == 1  # both cores decode: the model gets one thread
    assert cpu_threads(0, cores=16, workers=4) == 12
    assert cpu_threads(0, cores=8, workers=0) == 8  # no workers: every core, as torch's default
    assert cpu_threads(3, cores=2, workers=2) == 3  # predict.cpu_threads wins
    before = torch.get_num_threads()
    with torch_threads(max(1, before - 1) if before > 1 else 2):
        assert torch.get_num_threads() != before
    assert torch.get_num_threads() == before


class _ThreadProbe(ConstModel):
    """ConstModel that records torch's intra-op thread count at each forward."""

    seen: list[int] = []

    def forward(self, x):
        import torch

        self.seen.append(torch.get_num_threads())
        return super().forward(x)


def test_predict_images_runs_the_model_with_the_threads_the_workers_leave(demo_cfg: Config, demo_root: Path) -> None:
    import torch

    cfg = demo_cfg.replace(predict=demo_cfg.predict.__class__(**{**demo_cfg.predict.__dict__, "cpu_threads": 3}))
    probe = _ThreadProbe(LOG3)
    ens = Ensemble(cfg, [Member(probe, with_size(cfg, (32, 64)), "p", 0)], tta="none")
    ids = sorted(p.name for p in (demo_root / "test_images").iterdir())[:4]
    before = torch.get_num_threads()
    assert len(list(predict_images(ens, ids, demo_root / "test_images", batch_size=2, num_workers=1))) == 4
    assert probe.seen == [3, 3] and torch.get_num_threads() == before  # restored afterwards
