"""``kseg demo``: write the synthetic competition and run every pipeline stage that exists on it."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from kseg.config import load_config

log = logging.getLogger(__name__)

DEMO_CONFIG = "configs/demo.yaml"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default=DEMO_CONFIG, help=f"demo experiment (default {DEMO_CONFIG})")
    p.add_argument("--out", default="", help="where to write the synthetic competition (default: data.root)")
    p.add_argument("--seed", type=int, default=0, help="generator seed")
    p.add_argument("--n-train", type=int, default=48)
    p.add_argument("--n-test", type=int, default=16)
    p.add_argument("--tta", default="hflip", help="TTA used by the predict stage")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every stage")


def stage_commands(args: argparse.Namespace, root: Path) -> list[list[str]]:
    """The CLI argument lists of every stage, in pipeline order."""
    common = ["-c", args.config]
    ov = [f"data.root={root}", *args.overrides]
    return [
        ["folds", *common, "--force", *ov],
        ["train", *common, "--fold", "all", *ov],
        ["tune", *common, *ov],
        ["predict", *common, "--tta", args.tta, *ov],
    ]


def run(args: argparse.Namespace) -> int:
    from kseg.cli import _stage_module, main
    from kseg.data.synthetic import make_demo

    cfg = load_config(args.config, args.overrides)
    root = Path(args.out) if args.out else cfg.data_root
    make_demo(root, seed=args.seed, n_train=args.n_train, n_test=args.n_test, size=cfg.competition.image_size or (128, 256))
    print(f"synthetic competition written to {root}")
    for argv in stage_commands(args, root):
        if _stage_module(argv[0]) is None:
            print(f"kseg {argv[0]}: not built yet, stopping the demo here")
            return 0
        log.info("demo: kseg %s", " ".join(argv))
        rc = main(argv)
        if rc:
            log.error("demo: kseg %s failed with exit code %d", argv[0], rc)
            return rc
    return 0
