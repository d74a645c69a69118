"""kseg.train.dist: device resolution, torchrun's environment and the single-process identities.

The collectives across two processes are exercised by tests/test_train_ddp.py (torchrun, gloo).
"""

from __future__ import annotations

import pytest
import torch

from kseg.train import dist as D


def test_dist_info_defaults_to_one_main_process():
    info = D.DistInfo()
    assert (info.rank, info.world_size, info.device) == (0, 1, torch.device("cpu"))
    assert info.is_main and not info.distributed
    second = D.DistInfo(rank=1, world_size=2)
    assert second.distributed and not second.is_main


def test_resolve_device():
    assert D.resolve_device("cpu") == torch.device("cpu")
    want = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    assert D.resolve_device("auto") == want
    if torch.cuda.is_available():
        assert D.resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
    else:
        with pytest.raises(ValueError, match="train.device=cuda:1: CUDA is not available"):
            D.resolve_device("cuda:1")


def test_init_distributed_without_torchrun_is_a_single_process(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = D.init_distributed("cpu")
    assert info == D.DistInfo() and not torch.distributed.is_initialized()
    D.cleanup()  # nothing joined, nothing to leave


def test_collectives_are_identities_in_one_process():
    info = D.DistInfo()
    assert D.all_reduce_sum([1.5, 2.0], info) == [1.5, 2.0]
    assert D.all_true(True, info) and not D.all_true(False, info)
    assert D.all_gather_objects({"a": 1}, info) == [{"a": 1}]
    D.barrier(info)
    bn = torch.nn.BatchNorm1d(2)
    before = bn.running_mean.clone()
    D.broadcast_buffers(bn, info)
    assert torch.equal(bn.running_mean, before)
