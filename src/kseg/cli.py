"""The ``kseg`` command line: one subcommand per pipeline stage.

Each stage lives in ``kseg.commands.<stage>`` exposing ``add_arguments(parser)`` and ``run(args) -> int``;
a stage whose module does not exist yet exits 2 with a plain "not built yet" message.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

STAGES: dict[str, str] = {
    "folds": "write stratified folds.csv for a competition",
    "train": "train a model on one fold (or all) and write checkpoints + OOF predictions",
    "tune": "choose thresholds / min sizes / empty gates on out-of-fold predictions",
    "predict": "ensemble folds (+TTA) on the test images and write a submission csv",
    "validate": "check a submission csv the way Kaggle would",
    "kernel": "build, rehearse and push an offline Kaggle inference kernel",
    "demo": "write a synthetic competition (demo or a miniature of a real one) and run the whole pipeline on it",
}


def _stage_module(name: str):
    try:
        return importlib.import_module(f"kseg.commands.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"kseg.commands.{name}":
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kseg",
        description="Kaggle image-segmentation toolkit: folds -> train -> tune -> predict -> kernel.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="stage", metavar="STAGE")
    for name, help_text in STAGES.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod = _stage_module(name)
        if mod is not None:
            mod.add_arguments(p)
        else:
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        p.set_defaults(_module=mod, _stage=name)
    return parser


def add_config_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    """The ``-c CONFIG`` option and trailing ``key=value`` overrides every stage takes."""
    p.add_argument("-c", "--config", required=required, help="experiment YAML (configs/...)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.epochs=3")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # kseg runs offline: no update check on import
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # `kseg validate SUB -c CFG key=value`: overrides after options land here
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*(args.overrides or []), *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not args.stage:
        parser.print_help()
        return 0
    setup_logging(args.verbose)
    if args._module is None:
        print(f"kseg {args.stage}: not built yet", file=sys.stderr)
        return 2
    from kseg.typed import ConfigError

    try:
        return int(args._module.run(args) or 0)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        logging.getLogger("kseg").error("%s", e)
        if args.verbose:
            raise
        return 1


if __name__ == "__main__":
    sys.exit(main())
