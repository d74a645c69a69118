"""Miniature competitions: small, deterministic copies of each supported competition's file layout.

Each writer ``write_<name>(root, seed=0, n_train=..., n_test=..., *, encode) -> root`` (one module per
competition in ``kseg.demo``) writes the competition's real folders, file names, id formats, image formats
and sizes, csv columns, row conventions and line endings (see the README table "Competitions"), with few
images whose shapes are easy to learn (every class has its own brightness / colour), so one epoch of a tiny
model already gives non-empty masks. Masks in the csvs are RLEs at the images' own size, written by
``encode`` (the competition's dialect). ``MINIATURES`` maps a competition name to its writer, its shipped
experiment config and the overrides of a fast CPU smoke run (``kseg demo --competition NAME --fast``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kseg.data.rle import RleDialect
from kseg.demo.airplanes import write_airplanes
from kseg.demo.carvana import write_carvana
from kseg.demo.clouds import write_clouds
from kseg.demo.common import Encoder
from kseg.demo.contrails import write_contrails
from kseg.demo.hubmap import write_hubmap
from kseg.demo.isbi2012 import write_isbi2012
from kseg.demo.severstal import write_severstal
from kseg.demo.streets import write_streets
from kseg.demo.synthetic import make_demo
from kseg.demo.tgs_salt import write_tgs_salt
from kseg.demo.uwmgi import write_uwmgi
from kseg.registry import Registry

log = logging.getLogger(__name__)

__all__ = ["MINIATURES", "Miniature", "shipped_path", "write_miniature"]


_TINY_UNET = (
    "model.encoder=resnet18",
    "model.encoder_weights=none",
    "model.kwargs={encoder_depth: 3, decoder_channels: [32, 16, 8]}",
)
_FAST = (
    "train.epochs=1",
    "data.n_folds=2",
    "data.num_workers=0",
    "wandb.mode=disabled",
    "model.freeze_encoder_epochs=0",
    "train.patience=0",
)


def shipped_path(path: str | Path) -> Path:
    """A shipped file (config) relative to the working folder, else to the kseg checkout."""
    here = Path(path)
    if here.is_file():
        return here
    import kseg

    return Path(kseg.__file__).resolve().parents[2] / path


@dataclass(frozen=True)
class Miniature:
    """A miniature competition: its writer, shipped config, fast overrides and small writer arguments."""

    name: str
    writer: Callable[..., Path]
    config: str  # shipped experiment config, relative to the repository root
    fast: tuple[str, ...] = ()  # overrides of a 1-epoch CPU smoke run (tiny encoder, no pretrained weights)
    small: dict[str, Any] = field(default_factory=dict)  # writer arguments of the end-to-end test

    def dialect(self) -> RleDialect:
        """The RLE dialect of the shipped config's competition spec (what the csvs are written in)."""
        from kseg.config import load_config

        return load_config(shipped_path(self.config)).competition.rle

    def write(self, root: str | Path, seed: int = 0, encode: Encoder | None = None, **kwargs: Any) -> Path:
        """Write the miniature to ``root`` (created); returns ``root``.

        ``encode`` writes the csv masks; default: the shipped spec's dialect (tests pass a reference encoder).
        """
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        out = self.writer(root, seed=seed, encode=encode or self.dialect().encode, **kwargs)
        log.info("wrote miniature %s to %s", self.name, root)
        return out


MINIATURES: Registry[Miniature] = Registry("miniature competition")
for _m in (
    Miniature(
        "demo", make_demo, "configs/demo.yaml", _FAST + ("data.image_size=[64, 128]",), {"n_train": 20, "n_test": 2}
    ),
    Miniature(
        "severstal",
        write_severstal,
        "configs/severstal/unet-resnet18.yaml",
        _FAST + _TINY_UNET + ("data.image_size=[64, 384]", "data.batch_size=4", "train.accumulate=1"),
        {"n_train": 8, "n_test": 2},
    ),
    Miniature(
        "carvana",
        write_carvana,
        "configs/carvana/unet128.yaml",
        _FAST + _TINY_UNET + ("data.image_size=[64, 96]", "data.batch_size=4"),
        {"n_train": 2, "n_test": 1, "angles": 4},
    ),
    Miniature(
        "clouds",
        write_clouds,
        "configs/clouds/fpn-effb0.yaml",
        _FAST
        + (
            "model.encoder=resnet18",
            "model.encoder_weights=none",
            "model.kwargs={}",
            "data.image_size=[64, 96]",
            "data.batch_size=4",
        ),
        {"n_train": 8, "n_test": 2},
    ),
    Miniature(
        "tgs-salt",
        write_tgs_salt,
        "configs/tgs-salt/unet-r34.yaml",
        _FAST + _TINY_UNET + ("data.batch_size=8",),
        {"n_train": 12, "n_test": 4},
    ),
    Miniature(
        "isbi2012",
        write_isbi2012,
        "configs/isbi2012/unet.yaml",
        _FAST + _TINY_UNET + ("data.image_size=[128, 128]", "data.batch_size=2"),
        {"n_train": 4, "n_test": 2},
    ),
    Miniature(
        "streets",
        write_streets,
        "configs/streets/unet-mobilenetv2.yaml",
        _FAST + _TINY_UNET + ("data.image_size=[64, 128]", "data.batch_size=4"),
        {"n_train": 8, "n_test": 2, "frames": 2},
    ),
    Miniature(
        "airplanes",
        write_airplanes,
        "configs/airplanes/unet-binary.yaml",
        _FAST + _TINY_UNET + ("data.image_size=[128, 128]", "data.batch_size=4"),
        {"n_train": 8, "n_test": 2},
    ),
    Miniature(
        "uwmgi",
        write_uwmgi,
        "configs/uwmgi/unet-r34-25d.yaml",
        _FAST + _TINY_UNET + ("data.image_size=[64, 64]", "data.batch_size=4", "competition.oof_size=[64, 64]"),
        {"n_train": 3, "n_test": 2, "slices": 6},
    ),
    Miniature(
        "contrails",
        write_contrails,
        "configs/contrails/unet-r34-ash.yaml",
        _FAST + _TINY_UNET + ("data.image_size=[64, 64]", "data.batch_size=4"),
        {"n_train": 6, "n_test": 2},
    ),
    Miniature(
        "hubmap",
        write_hubmap,
        "configs/hubmap/unet-tiles.yaml",
        _FAST
        + _TINY_UNET
        + (
            "tile.size=64",
            "tile.downscale=4",
            "tile.overlap=32",
            "tile.per_slide=8",
            "data.image_size=[64, 64]",
            "data.batch_size=8",
            "predict.batch_size=16",
        ),
        {"n_train": 3, "n_test": 2, "size": 768},
    ),
):
    MINIATURES.register(_m.name, _m)


def write_miniature(name: str, root: str | Path, seed: int = 0, **kwargs: Any) -> Path:
    """Write the miniature competition ``name`` (see ``MINIATURES.names()``) to ``root``; returns ``root``."""
    return MINIATURES.get(name).write(root, seed=seed, **kwargs)
