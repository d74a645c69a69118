"""kseg.infer.stream.in_background: the model side of prediction runs ahead in a thread, bounded and safe."""

from __future__ import annotations

import threading
import time

import pytest

from kseg.infer.stream import in_background


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
