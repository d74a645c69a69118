"""The tune report says what the CV score is worth: how each run's OOF epoch was chosen (``train.select``)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import yaml
from test_tune import _demo_oof

from kseg.cli import main
from kseg.config import config_to_dict, save_config
from kseg.tune.report import selection_note
from kseg.tune.run import epoch_selection


def test_epoch_selection_reads_each_runs_saved_config(demo_cfg, tmp_path):
    runs = tmp_path / "runs"
    for name, train, sched in (
        ("a", {}, "cosine"),
        ("b", {"select": "last"}, "cosine"),
        ("c", {"select": "last"}, "plateau"),
    ):
        (runs / name).mkdir(parents=True)
        (runs / name / "config.yaml").write_text(yaml.safe_dump({"train": train, "sched": {"name": sched}}))
    (runs / "e").mkdir()
    (runs / "e" / "config.yaml").write_text("[unclosed")
    assert epoch_selection(demo_cfg, ["a", "b", "c", "d", "e"]) == {
        "a": "best",
        "b": "last",
        "c": "last+plateau",
        "d": "unknown",
        "e": "unknown",
    }

    assert selection_note({"b": "last"}).startswith("OOF of each fold's last epoch")
    picked = selection_note({"a": "best", "b": "last"})
    assert (
        picked.startswith("the CV score is optimistic") and "OOF of a are" in picked and "train.select=last" in picked
    )
    assert "OOF are the epoch" in selection_note({"a": "best"})  # every run: no list of names
    assert "slightly optimistic" in selection_note({"b": "last", "c": "last+plateau"})


def test_tune_cli_and_postprocess_json_state_the_selection(demo_cfg, tmp_path, capsys):
    _demo_oof(demo_cfg, np.random.default_rng(0))
    cfg_path = tmp_path / "demo.yaml"
    cfg_path.write_text(yaml.safe_dump(config_to_dict(demo_cfg)))
    save_config(demo_cfg)  # runs/demo/config.yaml as kseg train writes it: train.select=best
    base = ["tune", "-c", str(cfg_path), "--no-plots", "tune.thresholds=[0.5]", "tune.min_sizes=[0]"]
    assert main(base) == 0
    assert "note: the CV score is optimistic: each fold's checkpoint and OOF are the epoch" in capsys.readouterr().out
    data = json.loads((demo_cfg.run_dir / "postprocess.json").read_text())
    assert data["epoch_selection"] == {"demo": "best"} and data["cv_note"].startswith("the CV score is optimistic")

    save_config(demo_cfg.replace(train=dataclasses.replace(demo_cfg.train, select="last", patience=0)))
    assert main(base) == 0
    assert "note: OOF of each fold's last epoch (train.select=last)" in capsys.readouterr().out
    assert json.loads((demo_cfg.run_dir / "postprocess.json").read_text())["epoch_selection"] == {"demo": "last"}
