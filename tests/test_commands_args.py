"""kseg.commands.args: the config option every stage takes and ``--runs`` giving back trailing overrides."""

from __future__ import annotations

import argparse

import pytest

from kseg.commands.args import add_config_arguments, split_runs


def _parser(required: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_config_arguments(p, required=required)
    p.add_argument("--runs", nargs="+", default=None)
    return p


def test_config_option_and_overrides():
    args = _parser().parse_args(["-c", "x.yaml", "train.epochs=2", "data.n_folds=3"])
    assert args.config == "x.yaml" and args.overrides == ["train.epochs=2", "data.n_folds=3"]
    assert _parser(required=False).parse_args([]).config is None
    with pytest.raises(SystemExit):
        _parser().parse_args([])  # -c is required by default


def test_split_runs_gives_trailing_overrides_back():
    args = _parser().parse_args(["-c", "x.yaml", "a=1", "--runs", "exp1", "exp2", "train.epochs=2"])
    assert split_runs(args) == (["exp1", "exp2"], ["a=1", "train.epochs=2"])
    assert split_runs(_parser().parse_args(["-c", "x.yaml", "a=1"])) == (None, ["a=1"])  # no --runs: None
    assert split_runs(argparse.Namespace(overrides=["a=1"])) == (None, ["a=1"])  # a stage without --runs
