"""Fold data for training: datasets, DDP-aware samplers and per-sample augmentation seeding.

Augmentations are reproducible whatever the worker count, rank or resume point: the train sampler yields
``(epoch, index)`` keys and ``EpochSeeded`` reseeds the albumentations pipeline from
``derive_seed(seed, epoch, index)`` before each sample (one shared generator for all transforms, so
e.g. a horizontal and a vertical flip are not drawn from identical streams).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from kseg.config import Config
from kseg.data.dataset import SegDataset, collate_skip_bad, seed_worker
from kseg.data.tiles import dataset_type
from kseg.train.dist import DistInfo
from kseg.train.seed import derive_seed


class EpochSampler(Sampler[tuple[int, int]]):
    """Wraps a ``DistributedSampler`` (shuffled by seed + epoch) and tags each index with the epoch."""

    def __init__(self, base: DistributedSampler) -> None:
        self.base = base
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.base.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, int(i)) for i in self.base)

    def __len__(self) -> int:
        return len(self.base)


class EpochSeeded(Dataset):
    """``dataset[(epoch, i)]`` = ``dataset[i]`` with its augmentations seeded by (seed, epoch, i)."""

    def __init__(self, dataset: SegDataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, Any]:
        epoch, idx = key if isinstance(key, tuple) else (0, key)
        augment = getattr(self.dataset, "augment", None)
        if augment is not None:
            s = derive_seed(self.seed, epoch, idx)
            augment.set_random_state(np.random.default_rng(s), random.Random(s))
        if getattr(self.dataset, "keyed", False):  # kseg.data.tiles: the tile itself is drawn from (epoch, idx)
            return self.dataset[(epoch, idx)]
        return self.dataset[idx]


@dataclass
class FoldData:
    """Loaders of one fold; ``val_index`` are this rank's positions in ``val_ids`` (in loader order)."""

    train_loader: DataLoader
    val_loader: DataLoader
    train_sampler: EpochSampler
    generator: torch.Generator
    val_ds: SegDataset
    val_ids: list[str]
    val_index: list[int]


def shard(n: int, info: DistInfo) -> list[int]:
    """Positions ``rank, rank + world, ...`` of ``n`` items: every item once, no padding."""
    return list(range(info.rank, n, info.world_size))


def build_fold_data(
    cfg: Config, train_ids: Sequence[str], val_ids: Sequence[str], labels: pd.DataFrame, info: DistInfo
) -> FoldData:
    """Train loader (shuffled per epoch, sharded across ranks, seeded augments) and this rank's val loader."""
    make = dataset_type(cfg)  # SegDataset, or TileDataset with tile.size > 0
    train_ds = make(cfg, train_ids, labels, train=True)
    val_ds = make(cfg, val_ids, labels, train=False)
    skip = cfg.data.on_bad_image == "skip"
    if skip:  # validation rows (and the OOF) must be known up front: decode each val image once now
        val_ds.drop_unreadable()
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise ValueError(f"fold has {len(train_ds)} training and {len(val_ds)} validation images; both must be > 0")
    base = DistributedSampler(
        train_ds, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.train.seed, drop_last=False
    )
    sampler = EpochSampler(base)
    generator = torch.Generator().manual_seed(cfg.train.seed)
    bs = cfg.data.batch_size
    workers = cfg.data.num_workers
    common: dict[str, Any] = dict(
        num_workers=workers,
        pin_memory=info.device.type == "cuda",
        persistent_workers=workers > 0,
        worker_init_fn=seed_worker,
    )
    train_loader = DataLoader(
        EpochSeeded(train_ds, cfg.train.seed),
        batch_size=bs,
        sampler=sampler,
        drop_last=len(sampler) > bs,  # a lone tiny last batch only adds noise
        generator=generator,
        collate_fn=collate_skip_bad if skip else None,  # unreadable training images leave their batch
        **common,
    )
    val_index = shard(len(val_ds), info)
    # its own generator: a loader without one draws its worker seed from the global torch RNG on every new
    # iterator (once with persistent workers, every epoch without), so dropout would depend on num_workers
    val_loader = DataLoader(
        val_ds,
        batch_size=cfg.data.val_batch_size or 2 * bs,
        sampler=val_index,
        shuffle=False,
        generator=torch.Generator().manual_seed(cfg.train.seed),
        **common,
    )
    return FoldData(train_loader, val_loader, sampler, generator, val_ds, list(val_ds.ids), val_index)
