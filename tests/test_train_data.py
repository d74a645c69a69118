"""kseg.train.data: rank shards, epoch-tagged sampling and per-sample augmentation seeding."""

from __future__ import annotations

import torch
from torch.utils.data import DistributedSampler

from kseg.data.dataset import SegDataset, read_labels
from kseg.train.data import EpochSampler, EpochSeeded, shard
from kseg.train.dist import DistInfo

from _train_support import tiny_config


def test_shard_gives_every_item_to_one_rank_without_padding():
    assert shard(5, DistInfo()) == [0, 1, 2, 3, 4]
    parts = [shard(5, DistInfo(rank=r, world_size=2)) for r in range(2)]
    assert parts == [[0, 2, 4], [1, 3]]
    assert sorted(i for p in (shard(7, DistInfo(rank=r, world_size=3)) for r in range(3)) for i in p) == list(range(7))


def test_epoch_sampler_tags_indices_with_the_epoch_and_reshuffles_per_epoch():
    base = DistributedSampler(range(10), num_replicas=1, rank=0, shuffle=True, seed=4)
    sampler = EpochSampler(base)
    first = list(sampler)
    assert len(sampler) == 10 and {e for e, _ in first} == {0} and sorted(i for _, i in first) == list(range(10))
    sampler.set_epoch(3)
    third = list(sampler)
    assert {e for e, _ in third} == {3} and [i for _, i in third] != [i for _, i in first]
    sampler.set_epoch(0)
    assert list(sampler) == first  # the order is a function of (seed, epoch) alone


def test_augment_seeding_is_per_sample_and_uncorrelated(demo_root, tmp_path):
    cfg = tiny_config(
        demo_root,
        tmp_path,
        "data.augment=[{name: HorizontalFlip, params: {p: 0.5}}, {name: VerticalFlip, params: {p: 0.5}}]",
    )
    labels = read_labels(cfg)
    ds = EpochSeeded(SegDataset(cfg, labels.image_id[:1].tolist(), labels, train=True), seed=3)
    plain = SegDataset(cfg, labels.image_id[:1].tolist(), labels, train=False)[0]["image"]
    flips = []
    for epoch in range(24):
        a, b = ds[(epoch, 0)]["image"], ds[(epoch, 0)]["image"]
        assert torch.equal(a, b)  # same (epoch, index) -> same augmentation
        flips.append(
            (
                torch.equal(a, plain.flip(-1)) or torch.equal(a, plain.flip(-1, -2)),
                torch.equal(a, plain.flip(-2)) or torch.equal(a, plain.flip(-1, -2)),
            )
        )
    assert len(set(flips)) >= 3  # h and v flips vary independently (albumentations' seed= makes them equal)
