"""``kseg report [--runs-dir runs] [--html PATH] [--wandb] [-c CONFIG]``: every experiment in one table.

Markdown to stdout (folds trained, per-fold best, OOF default / tuned / CV tuned, TTA, kernel versions and
leaderboard scores, config differences, training time) and a self-contained HTML page with each experiment's
OOF threshold curves and prediction overlays (default ``<runs_dir>/report.html``). With ``--wandb`` the wandb
runs of each experiment (its group in ``wandb.project``) are listed too (needs the network, or offline files).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kseg.layout import RUNS_DIR, report_path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--runs-dir", default=None, help=f"folder of the experiments (default: the config's, else {RUNS_DIR})"
    )
    p.add_argument("--html", default=None, help="HTML path (default: <runs_dir>/report.html)")
    p.add_argument("-c", "--config", default=None, help="a config whose runs_dir and wandb settings to use")
    p.add_argument("--wandb", action="store_true", help="also list the linked wandb runs (wandb.mode=online)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (with -c)")


def run(args: argparse.Namespace) -> int:
    from kseg.report.html import write_report_html
    from kseg.report.table import collect, markdown

    cfg = None
    if args.config:
        from kseg.config import load_config

        cfg = load_config(args.config, args.overrides)
    runs_dir = Path(args.runs_dir or (cfg.runs_dir if cfg else RUNS_DIR))
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"runs folder not found: {runs_dir} (train an experiment first)")
    rows = collect(runs_dir)
    if not rows:
        raise FileNotFoundError(f"no experiment (no */config.yaml) under {runs_dir}")
    print(markdown(rows), end="")
    if args.wandb:
        from kseg.report.wandb_runs import wandb_lines

        if cfg is None:
            raise ValueError("--wandb needs -c CONFIG (its wandb.project and entity)")
        print("\n".join(wandb_lines(cfg, [r.name for r in rows])))
    path = write_report_html(Path(args.html) if args.html else report_path(runs_dir), rows, runs_dir)
    print(f"\nwrote {path}")
    return 0
