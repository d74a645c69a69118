"""The stage table and dispatch of the ``kseg`` command line.

Each stage lives in ``kseg.commands.<stage>`` exposing ``add_arguments(parser)`` and ``run(args) -> int``;
``run_stage(argv)`` runs one stage in this process (``kseg demo`` runs the pipeline that way).
"""

from __future__ import annotations

import argparse
import importlib
import logging
from types import ModuleType

STAGES: dict[str, str] = {
    "folds": "write stratified folds.csv for a competition",
    "train": "train a model on one fold (or all) and write checkpoints + OOF predictions",
    "tune": "choose thresholds / min sizes / empty gates on out-of-fold predictions",
    "ensemble": "choose ensemble weights of several runs on their OOF (greedy selection, cross-validated)",
    "predict": "ensemble folds (+TTA) on the test images and write a submission csv",
    "validate": "check a submission csv the way Kaggle would",
    "kernel": "build, rehearse and push an offline Kaggle inference kernel",
    "report": "one table of every experiment under runs/ (markdown + self-contained HTML)",
    "demo": "write a synthetic competition (demo or a miniature of a real one) and run the whole pipeline on it",
}


def stage_module(name: str) -> ModuleType:
    """The module ``kseg.commands.<name>`` of a stage in ``STAGES``."""
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}: one of {', '.join(STAGES)}")
    return importlib.import_module(f"kseg.commands.{name}")


def build_parser() -> argparse.ArgumentParser:
    """The ``kseg`` parser: ``-v`` and one subparser per stage (``args._module`` is the stage's module)."""
    parser = argparse.ArgumentParser(
        prog="kseg",
        description="Kaggle image-segmentation toolkit: folds -> train -> tune -> predict -> kernel.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="stage", metavar="STAGE")
    for name, help_text in STAGES.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod = stage_module(name)
        mod.add_arguments(p)
        p.set_defaults(_module=mod, _stage=name)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; ``kseg validate SUB -c CFG key=value``: overrides after options join the overrides."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*(args.overrides or []), *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def dispatch(args: argparse.Namespace) -> int:
    """Run the parsed stage; a config, missing-file or value error is logged and exits 1 (raised with ``-v``)."""
    from kseg.typed import ConfigError

    try:
        return int(args._module.run(args) or 0)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        logging.getLogger("kseg").error("%s", e)
        if args.verbose:
            raise
        return 1


def run_stage(argv: list[str]) -> int:
    """Run one stage, ``argv`` as after ``kseg`` (e.g. ``["folds", "-c", CFG, "--force"]``); its exit code."""
    args = parse_args(build_parser(), argv)
    if not args.stage:
        raise ValueError(f"no stage in {argv}")
    return dispatch(args)
