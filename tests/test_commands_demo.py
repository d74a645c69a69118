"""kseg demo (kseg.commands.demo): the stage list, its shell-quoted log, folds fitted to the miniature."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

import pandas as pd
import pytest

from kseg.cli import main
from kseg.commands import demo, stages
from kseg.commands.demo import COMPETITIONS, stage_commands
from kseg.demo.registry import MINIATURES


def run_demo(argv: list[str], monkeypatch, real: tuple[str, ...] = ()) -> list[list[str]]:
    """``kseg demo ARGV`` with every stage recorded, and run for real only when listed in ``real``."""
    calls: list[list[str]] = []
    real_run_stage = stages.run_stage

    def fake_run_stage(stage_argv: list[str]) -> int:
        calls.append(list(stage_argv))
        return real_run_stage(stage_argv) if stage_argv[0] in real else 0

    monkeypatch.setattr(stages, "run_stage", fake_run_stage)
    args = stages.build_parser().parse_args(["demo", *argv])
    assert demo.run(args) == 0
    return calls


def test_demo_logs_every_stage_shell_quoted(tmp_path, monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO, logger="kseg")
    kwargs = "model.kwargs={encoder_depth: 3, decoder_channels: [32, 16, 8]}"
    out = tmp_path / "my data"  # a space in a path too
    calls = run_demo(
        ["--small", "--fast", "--out", str(out), "--no-kernel", f"runs_dir={tmp_path}/runs", kwargs], monkeypatch
    )
    logged = [r.getMessage().removeprefix("demo: ") for r in caplog.records if r.getMessage().startswith("demo: kseg ")]
    assert [c[0] for c in calls] == ["folds", "train", "predict", "tune", "predict", "validate"]
    assert [shlex.split(line) for line in logged] == [["kseg", *c] for c in calls]
    assert all(kwargs in c and f"data.root={out}" in c for c in calls)
    assert "'model.kwargs={encoder_depth: 3, decoder_channels: [32, 16, 8]}'" in logged[1]


@pytest.mark.parametrize("name, n_groups", [("streets", 4), ("carvana", 3)])
def test_demo_fits_folds_to_its_miniature(name, n_groups, tmp_path, monkeypatch, caplog) -> None:
    """The default (not --small) miniatures have fewer groups than the shipped configs' 5 folds."""
    caplog.set_level(logging.INFO, logger="kseg")
    out = tmp_path / name
    calls = run_demo(
        ["--competition", name, "--out", str(out), f"runs_dir={tmp_path}/runs"], monkeypatch, real=("folds",)
    )
    assert all(c[-1] == f"data.n_folds={n_groups}" for c in calls)
    assert f"has {n_groups} groups, fewer than data.n_folds=5" in caplog.text
    assert sorted(pd.read_csv(out / "folds.csv").fold.unique().tolist()) == list(range(n_groups))
    if name == "streets":  # a user's own n_folds wins: when it fits, as given; when not, a clear error
        calls = run_demo(["--competition", name, "--out", str(out), "data.n_folds=2"], monkeypatch)
        assert all("data.n_folds=2" in c and f"data.n_folds={n_groups}" not in c for c in calls)
        with pytest.raises(ValueError, match=f"data.n_folds=5: the streets miniature in {out} has only 4 groups"):
            run_demo(["--competition", name, "--out", str(out), "data.n_folds=5"], monkeypatch)


def test_demo_command_names_and_unknown_competition(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert sorted(COMPETITIONS) == MINIATURES.names()
    assert main(["demo", "--competition", "kaggle-nope", "--out", str(tmp_path / "x")]) == 1
    assert not (tmp_path / "x").exists()


def test_demo_command_stage_list(tmp_path: Path) -> None:
    argvs = stage_commands(Path("c.yaml"), tmp_path, ["train.epochs=1"], "none", Path("s.csv"))
    assert [s[0] for s in argvs] == ["folds", "train", "tune", "predict", "validate"]
    assert argvs[3][argvs[3].index("--out") + 1] == "s.csv" and "s.csv" in argvs[4]
    assert all(f"data.root={tmp_path}" in s and s[-1] == "train.epochs=1" for s in argvs)
    with_oof = stage_commands(Path("c.yaml"), tmp_path, [], "hflip", Path("s.csv"), oof_tta="hflip")
    assert [s[0] for s in with_oof] == ["folds", "train", "predict", "tune", "predict", "validate"]
    assert with_oof[2][with_oof[2].index("--tta") + 1] == "hflip" and "--oof" in with_oof[2]


@pytest.mark.parametrize("name", ["uwmgi", "contrails"])
def test_demo_ends_with_the_kernel_on_nested_and_array_layouts(name, tmp_path, monkeypatch) -> None:
    """uwmgi (image_path files in nested folders) and contrails (array record folders) rehearse their kernel."""
    argv = ["--competition", name, "--small", "--fast", "--out", str(tmp_path / name), f"runs_dir={tmp_path}/runs"]
    calls = run_demo(argv, monkeypatch)
    assert [c[:2] for c in calls[-3:]] == [["validate", "-c"], ["kernel", "build"], ["kernel", "rehearse"]]
    assert all(f"data.root={tmp_path / name}" in c for c in calls[-2:])
    assert run_demo([*argv, "--no-kernel"], monkeypatch)[-1][0] == "validate"
