"""`kseg predict` on real tiny checkpoints: submission rows, pseudo-labels, exit codes, the mismatch flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kseg.config import Config


def test_kseg_predict_cli(tiny_runs: Config, demo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from kseg.cli import main

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "sub.csv"
    overrides = [
        f"data.root={demo_root}",
        f"runs_dir={tmp_path / 'runs'}",
        "data.image_size=[64,128]",
        "data.num_workers=0",
        "train.device=cpu",
    ]
    rc = main(
        [
            "predict",
            "-c",
            str(repo / "configs" / "demo.yaml"),
            "--folds",
            "0,1",
            "--tta",
            "vflip",
            "--out",
            str(out),
            "--pseudo-labels",
            str(tmp_path / "pl.csv"),
            "--no-progress",
            *overrides,
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"submission: {out}" in printed and "2 checkpoint(s) x 2 TTA view(s)" in printed
    sample_lines = (demo_root / "sample_submission.csv").read_text().splitlines()
    lines = out.read_text().splitlines()
    assert lines[0] == sample_lines[0] and len(lines) == len(sample_lines)
    assert [ln.split(",")[0] + ln.split(",")[-1] for ln in lines] == [
        ln.split(",")[0] + ln.split(",")[-1] for ln in sample_lines
    ]
    assert (tmp_path / "pl.csv").read_text().startswith("ImageId,ClassId,EncodedPixels\n")
    # --runs swallowing trailing overrides, and a missing fold
    rc = main(
        [
            "predict",
            "-c",
            str(repo / "configs" / "demo.yaml"),
            "--out",
            str(out),
            "--folds",
            "0,5",
            "--runs",
            "demo",
            *overrides,
        ]
    )
    assert rc == 1


def _predict_argv(demo_root: Path, tmp_path: Path, *extra: str) -> list[str]:
    """``kseg predict`` of the demo config at 64x128 on the CPU into ``tmp_path/s.csv``."""
    config = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    return ["predict", "-c", str(config), *extra, "--out", str(tmp_path / "s.csv"), "--no-progress"] + [
        f"data.root={demo_root}",
        f"runs_dir={tmp_path / 'runs'}",
        "data.image_size=[64,128]",
        "train.device=cpu",
    ]


def test_kseg_predict_exits_1_when_the_validator_rejects(
    tiny_runs: Config, demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import kseg.submission.validate as validate
    from kseg.cli import main

    real = validate.validate_submission

    def strict(path: Path, cfg: Config):
        report = real(path, cfg)
        assert report.ok, report.problems  # our output is valid; then pretend Kaggle disagrees
        report.problems.append("row 2: pretend problem")
        return report

    monkeypatch.setattr(validate, "validate_submission", strict)
    rc = main(_predict_argv(demo_root, tmp_path))
    assert rc == 1
    assert "submission INVALID" in capsys.readouterr().out


def test_kseg_predict_allow_postprocess_mismatch_flag(
    tiny_runs: Config, demo_root: Path, tmp_path: Path, caplog
) -> None:
    from kseg.cli import main

    classes = [{"name": c, "params": {"threshold": 0.5}} for c in tiny_runs.competition.classes]
    (tiny_runs.run_dir / "postprocess.json").write_text(
        json.dumps({"runs": ["demo"], "folds": [0, 1], "oof_tta": "none", "classes": classes})
    )
    argv = _predict_argv(demo_root, tmp_path, "--tta", "vflip")
    assert main(argv) == 1 and "tta none -> vflip" in caplog.text and not (tmp_path / "s.csv").exists()
    assert main([*argv, "--allow-postprocess-mismatch"]) == 0 and (tmp_path / "s.csv").is_file()
