"""kseg.cli and kseg.commands.stages: the stage table, parsing and dispatch."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from kseg.cli import main
from kseg.commands.stages import STAGES, run_stage, stage_module

from conftest import REPO


def test_help_lists_every_stage() -> None:
    out = subprocess.run([sys.executable, "-m", "kseg.cli", "--help"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0
    for stage in ["folds", "train", "tune", "predict", "kernel", "demo", "validate"]:
        assert stage in out.stdout and stage in STAGES


def test_folds_command_and_bad_override(demo_root, tmp_path, capsys) -> None:
    args = [
        "folds",
        "-c",
        str(REPO / "configs/demo.yaml"),
        f"data.root={demo_root}",
        f"data.folds_csv={tmp_path}/f.csv",
    ]
    assert main(args) == 0
    assert "fold" in capsys.readouterr().out and len(pd.read_csv(tmp_path / "f.csv")) == 24
    assert main(args) == 1  # refuses to overwrite
    assert main(args + ["--force"]) == 0
    assert main(["folds", "-c", str(REPO / "configs/demo.yaml"), "model.arch=Unett"]) == 1


def test_overrides_after_options_and_positionals(demo_root, tmp_path) -> None:
    from kseg.commands.stages import build_parser

    args, extra = build_parser().parse_known_args(["validate", "sub.csv", "-c", "x.yaml", "a.b=1"])
    assert extra == ["a.b=1"]
    # main() folds such trailing key=value tokens into the overrides of the stage
    assert (
        main(
            [
                "folds",
                "-c",
                str(REPO / "configs/demo.yaml"),
                "--force",
                f"data.root={demo_root}",
                f"data.folds_csv={tmp_path}/f.csv",
                "data.n_folds=2",
            ]
        )
        == 0
    )
    assert sorted(pd.read_csv(tmp_path / "f.csv").fold.unique().tolist()) == [0, 1]


def test_unknown_stage_and_no_stage_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown stage 'nope': one of folds, train"):
        stage_module("nope")
    with pytest.raises(ValueError, match="no stage"):
        run_stage(["-v"])
    with pytest.raises(SystemExit):
        main(["nope"])  # argparse: invalid choice
