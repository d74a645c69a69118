"""``kseg report --wandb``: the wandb runs linked to each experiment (its group: training folds, tune, ensemble,
kernel). ``wandb.mode=online`` asks the wandb API for the runs of the group in ``wandb.project``; otherwise the
offline run folders under ``runs/<exp>/wandb/`` are listed (``wandb sync`` uploads them). Never fatal.
"""

from __future__ import annotations

import logging
from pathlib import Path

from kseg.config import Config
from kseg.layout import RunLayout

log = logging.getLogger(__name__)


def offline_runs(runs_dir: Path, name: str) -> list[str]:
    """The offline run folders (``offline-run-<time>-<id>``) of experiment ``name``, sorted."""
    folder = RunLayout(runs_dir, name).root / "wandb"
    return sorted(p.name for p in folder.glob("offline-run-*") if p.is_dir()) if folder.is_dir() else []


def online_runs(cfg: Config, name: str) -> list[str]:
    """``<run name> (<job type>) <url>`` of every run in group ``name`` of the configured project."""
    import wandb

    path = f"{cfg.wandb.entity}/{cfg.wandb.project}" if cfg.wandb.entity else cfg.wandb.project
    return [f"{r.name} ({r.job_type}) {r.url}" for r in wandb.Api().runs(path, filters={"group": name})]


def wandb_lines(cfg: Config, names: list[str]) -> list[str]:
    """Markdown lines listing each experiment's wandb runs."""
    lines = ["", f"wandb runs (project {cfg.wandb.project}, mode {cfg.wandb.mode}):"]
    for name in names:
        try:
            found = online_runs(cfg, name) if cfg.wandb.mode == "online" else offline_runs(Path(cfg.runs_dir), name)
        except Exception as e:  # noqa: BLE001 - the report is written without them
            log.warning("wandb runs of %s: %s: %s", name, type(e).__name__, e)
            found = []
        lines.append(f"- {name}: " + (", ".join(found) if found else "none"))
    return lines
