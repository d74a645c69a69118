"""``kseg train -c CONFIG --fold K|all [--resume] [key=value ...]``: train folds, write runs/<exp>/fold<K>/.

Under ``torchrun --nproc_per_node N -m kseg.cli train ...`` every process runs this and joins one DDP group.
"""

from __future__ import annotations

import argparse
import logging
import os

from kseg.commands.args import add_config_arguments
from kseg.config import Config, load_config

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--fold", required=True, help="fold number K, a comma list (0,2), or 'all'")
    p.add_argument("--resume", action="store_true", help="continue each fold from its last.pt")


def parse_folds(text: str, cfg: Config) -> list[int]:
    """``all`` -> the folds present in folds.csv; ``K`` or ``K1,K2`` -> those folds (checked)."""
    from kseg.data.folds import read_folds

    available = sorted(set(read_folds(cfg).fold.tolist()))
    if text.strip().lower() == "all":
        return available
    try:
        folds = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise ValueError(f"--fold: expected K, K1,K2 or all, got {text!r}") from None
    bad = [k for k in folds if k not in available]
    if bad or not folds:
        raise ValueError(
            f"--fold {text}: fold {bad[0] if bad else text} is not in {cfg.folds_path} (folds: {available})"
        )
    return folds


def run(args: argparse.Namespace) -> int:
    from kseg.train.fit import train_folds
    from kseg.train.preflight import preflight

    cfg = load_config(args.config, args.overrides)
    if not cfg.folds_path.is_file():
        raise FileNotFoundError(f"{cfg.folds_path} not found: run `kseg folds -c {args.config}` first")
    folds = parse_folds(args.fold, cfg)
    preflight(cfg, folds)  # names, output folder and disk space: fail now, not after an epoch
    results = train_folds(cfg, folds, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        for r in results:
            kept = (
                ""
                if r.select == "best"
                else (
                    f"; best.pt + oof.npy: last epoch, {cfg.competition.metric} "
                    f"{r.selected_score:.4f} (train.select=last)"
                )
            )
            if r.swa_score == r.swa_score:  # train.swa averaged the fold (not NaN)
                kept += f"; averaged weights {r.swa_score:.4f} ({'kept as best.pt' if r.swa_kept else 'not kept'})"
            print(
                f"fold {r.fold}: best {cfg.competition.metric} {r.best_score:.4f} at epoch {r.best_epoch}/{r.epochs}"
                f"{kept} ({r.seconds:.0f}s) -> {r.fold_dir}"
            )
    return 0
