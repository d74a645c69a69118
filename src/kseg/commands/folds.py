"""``kseg folds -c CONFIG [--force]``: write <data.root>/folds.csv and print the per-fold table."""

from __future__ import annotations

import argparse

from kseg.commands.args import add_config_arguments
from kseg.config import load_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--force", action="store_true", help="overwrite an existing folds.csv")


def run(args: argparse.Namespace) -> int:
    from kseg.data.folds import write_folds

    cfg = load_config(args.config, args.overrides)
    try:
        _, table = write_folds(cfg, force=args.force)
    except FileExistsError as e:
        raise ValueError(str(e)) from e
    print(f"folds written to {cfg.folds_path}")
    print(table.to_string(index=False))
    return 0
