from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from kseg.cli import main
from kseg.commands.stages import STAGES

from conftest import REPO


def test_help_lists_every_stage() -> None:
    out = subprocess.run([sys.executable, "-m", "kseg.cli", "--help"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0
    for stage in ["folds", "train", "tune", "predict", "kernel", "demo", "validate"]:
        assert stage in out.stdout and stage in STAGES


def test_folds_command_and_bad_override(demo_root, tmp_path, capsys) -> None:
    args = ["folds", "-c", str(REPO / "configs/demo.yaml"), f"data.root={demo_root}", f"data.folds_csv={tmp_path}/f.csv"]
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
    assert main(["folds", "-c", str(REPO / "configs/demo.yaml"), "--force", f"data.root={demo_root}",
                 f"data.folds_csv={tmp_path}/f.csv", "data.n_folds=2"]) == 0  # fmt: skip
    assert sorted(pd.read_csv(tmp_path / "f.csv").fold.unique().tolist()) == [0, 1]


# --------------------------------------------------------------------------- kseg demo, stages faked or real


def run_demo(argv: list[str], monkeypatch, real: tuple[str, ...] = ()) -> list[list[str]]:
    """``kseg demo ARGV`` with every stage recorded, and run for real only when listed in ``real``."""
    from kseg.commands import demo, stages

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
    import logging
    import shlex

    caplog.set_level(logging.INFO, logger="kseg")
    kwargs = "model.kwargs={encoder_depth: 3, decoder_channels: [32, 16, 8]}"
    out = tmp_path / "my data"  # a space in a path too
    calls = run_demo(["--small", "--fast", "--out", str(out), "--no-kernel", f"runs_dir={tmp_path}/runs", kwargs],
                     monkeypatch)  # fmt: skip
    logged = [r.getMessage().removeprefix("demo: ") for r in caplog.records if r.getMessage().startswith("demo: kseg ")]
    assert [c[0] for c in calls] == ["folds", "train", "predict", "tune", "predict", "validate"]
    assert [shlex.split(line) for line in logged] == [["kseg", *c] for c in calls]
    assert all(kwargs in c and f"data.root={out}" in c for c in calls)
    assert "'model.kwargs={encoder_depth: 3, decoder_channels: [32, 16, 8]}'" in logged[1]


@pytest.mark.parametrize("name, n_groups", [("streets", 4), ("carvana", 3)])
def test_demo_fits_folds_to_its_miniature(name, n_groups, tmp_path, monkeypatch, caplog) -> None:
    """The default (not --small) miniatures have fewer groups than the shipped configs' 5 folds."""
    import logging

    caplog.set_level(logging.INFO, logger="kseg")
    out = tmp_path / name
    calls = run_demo(["--competition", name, "--out", str(out), f"runs_dir={tmp_path}/runs"], monkeypatch,
                     real=("folds",))  # fmt: skip
    assert all(c[-1] == f"data.n_folds={n_groups}" for c in calls)
    assert f"has {n_groups} groups, fewer than data.n_folds=5" in caplog.text
    assert sorted(pd.read_csv(out / "folds.csv").fold.unique().tolist()) == list(range(n_groups))
    if name == "streets":  # a user's own n_folds wins: when it fits, as given; when not, a clear error
        calls = run_demo(["--competition", name, "--out", str(out), "data.n_folds=2"], monkeypatch)
        assert all("data.n_folds=2" in c and f"data.n_folds={n_groups}" not in c for c in calls)
        with pytest.raises(ValueError, match=f"data.n_folds=5: the streets miniature in {out} has only 4 groups"):
            run_demo(["--competition", name, "--out", str(out), "data.n_folds=5"], monkeypatch)
