"""Argument helpers the stages share: the config option with its overrides, and ``--runs``."""

from __future__ import annotations

import argparse


def add_config_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    """The ``-c CONFIG`` option and trailing ``key=value`` overrides every stage takes."""
    p.add_argument("-c", "--config", required=required, help="experiment YAML (configs/...)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.epochs=3")


def split_runs(args: argparse.Namespace) -> tuple[list[str] | None, list[str]]:
    """(``--runs`` experiments or None when not given, overrides): ``--runs a b key=value`` swallows trailing
    overrides, so they are given back to the overrides."""
    runs = getattr(args, "runs", None)
    if runs is None:
        return None, list(args.overrides)
    return [r for r in runs if "=" not in r], list(args.overrides) + [r for r in runs if "=" in r]
