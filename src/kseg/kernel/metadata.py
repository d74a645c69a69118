"""``dataset-metadata.json`` and ``kernel-metadata.json`` as the kaggle CLI 2.x reads them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kseg.atomic import atomic_write_text
from kseg.config import Config
from kseg.kernel.slugs import KernelNames
from kseg.layout import KernelLayout

__all__ = [
    "dataset_metadata",
    "kernel_metadata",
    "write_metadata",
    "read_json",
    "write_json",
    "competition_slug",
]


def competition_slug(cfg: Config) -> str:
    """The competition's Kaggle slug (``competition.kaggle``, else its name)."""
    return cfg.competition.kaggle or cfg.competition.name


def dataset_metadata(cfg: Config, names: KernelNames) -> dict[str, Any]:
    """The dataset's metadata: id ``<user>/<slug>``, title, exactly one license."""
    return {
        "title": names.dataset_title,
        "id": names.dataset_id,
        "licenses": [{"name": cfg.kernel.license}],
        "description": f"kseg inference bundle of experiment {cfg.name}: fold checkpoints, configs, "
        "postprocess.json and the wheels the offline kernel installs.",
    }


def kernel_metadata(cfg: Config, names: KernelNames, code_file: str) -> dict[str, Any]:
    """A private GPU script kernel with the internet off, reading the dataset and the competition."""
    return {
        "id": names.kernel_id,
        "title": names.kernel_title,
        "code_file": code_file,
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": bool(cfg.kernel.enable_gpu),
        "enable_tpu": False,
        "enable_internet": False,
        "dataset_sources": [names.dataset_id],
        "competition_sources": [competition_slug(cfg)],
        "kernel_sources": [],
        "model_sources": [],
    }


def write_json(path: Path, data: Any) -> None:
    """Atomic, indented JSON."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> Any:
    """JSON of ``path``; errors name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def write_metadata(cfg: Config, names: KernelNames, build: KernelLayout, code_file: str) -> None:
    """(Re)write both metadata files of ``build``, e.g. with the real username right before a push."""
    write_json(build.dataset_metadata, dataset_metadata(cfg, names))
    write_json(build.kernel_metadata, kernel_metadata(cfg, names, code_file))
