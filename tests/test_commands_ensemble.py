"""kseg ensemble on the demo: two experiments of different configs -> weights -> predict uses them -> the kernel
built from them rehearses offline."""

from __future__ import annotations

import json

import pytest

from kseg.cli import main
from kseg.config import load_config
from kseg.ensemble_spec import read_ensemble
from kseg.infer.ensemble import Ensemble
from kseg.infer.pipeline import chosen_members
from kseg.report.table import COLUMNS

from _train_support import TINY
from conftest import REPO

RUNS = {"demo": "demo.yaml", "demo-b": "demo-b.yaml"}


def _ov(demo_root, tmp_path) -> list[str]:
    return [
        f"data.root={demo_root}",
        f"data.folds_csv={tmp_path / 'folds.csv'}",
        f"runs_dir={tmp_path / 'runs'}",
        f"kernel.dir={tmp_path / 'kernels'}",
        *[t for t in TINY if not t.startswith("model.kwargs")],
        "tune.thresholds=[0.3, 0.5, 0.7]",
        "tune.min_sizes=[0, 64]",
    ]


@pytest.fixture(scope="module")
def trained(demo_root, tmp_path_factory):
    """The two demo experiments trained (1 epoch, 3 folds) on one folds.csv, and the ensemble chosen."""
    tmp_path = tmp_path_factory.mktemp("ensemble")
    ov = _ov(demo_root, tmp_path)
    assert main(["folds", "-c", str(REPO / "configs/demo.yaml"), *ov]) == 0
    for name, config in RUNS.items():
        assert main(["train", "-c", str(REPO / "configs" / config), "--fold", "all", f"name={name}", *ov]) == 0
    return tmp_path, ov


@pytest.mark.slow
def test_ensemble_predict_kernel_and_report_on_the_demo(trained, demo_root, monkeypatch, capsys) -> None:
    tmp_path, ov = trained
    monkeypatch.chdir(tmp_path)
    config = str(REPO / "configs/demo-ensemble.yaml")
    assert main(["ensemble", "-c", config, "--runs", *RUNS, "--steps", "4", "--no-plots", *ov]) == 0
    out = capsys.readouterr().out
    assert "CV score" in out and "optimistic in-sample" in out
    cfg = load_config(config, ov)
    spec = read_ensemble(cfg.layout.ensemble)
    assert set(spec.runs) <= set(RUNS) and sum(spec.weights.values()) == pytest.approx(1.0)
    record = json.loads(cfg.layout.ensemble.read_text())
    assert set(record["member_scores"]) == set(RUNS) and record["scores"]["cv"] is not None

    # kseg predict of the ensemble's config loads the chosen members with the chosen weights
    members, weights = chosen_members(cfg, ())
    assert sorted(members) == sorted(spec.runs)
    ens = Ensemble.from_runs(cfg, members, device="cpu", exp_weights=weights)
    assert ens.exp_weights == pytest.approx(spec.weights)
    for group in ens.groups:
        for m, w in zip(group.members, group.weights, strict=True):
            assert w == pytest.approx(spec.weights[m.exp] / 3)  # 3 folds each
    sub = tmp_path / "ens.csv"
    assert main(["predict", "-c", config, "--tta", "none", "--out", str(sub), "--no-progress", *ov]) == 0
    assert sub.is_file()
    assert main(["predict", "-c", config, "--runs", "demo", "--out", str(tmp_path / "x.csv"), *ov]) == 1  # not its runs

    # the kernel ships the members and the ensemble file, and rehearses offline
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    assert main(["kernel", "build", "-c", config, "--tta", "none", "--no-wheels", *ov]) == 0
    shipped = cfg.kernel_layout.run(cfg.name)
    assert read_ensemble(shipped.ensemble).weights == spec.weights and shipped.postprocess.is_file()
    for run in spec.runs:
        assert all(cfg.kernel_layout.run(run).best(k).is_file() for k in range(3))
    assert main(["kernel", "rehearse", "-c", config, "--quiet", *ov]) == 0
    rehearsed = cfg.kernel_layout.rehearsal_submission.read_text()
    assert rehearsed == sub.read_text()  # the kernel predicts exactly what kseg predict did here

    # kseg report: both experiments (tuned) and the ensemble, each with its CV score
    for name, file in RUNS.items():
        assert main(["tune", "-c", str(REPO / "configs" / file), f"name={name}", "--no-plots", *ov]) == 0
    capsys.readouterr()
    assert main(["report", "--runs-dir", str(tmp_path / "runs")]) == 0
    table = capsys.readouterr().out
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
        for line in table.splitlines()[2:]
        if line.startswith("| ")
    }
    assert set(rows) == {*RUNS, "demo-ensemble"}
    cv = COLUMNS.index("CV tuned")
    for name in RUNS:
        post = json.loads(
            load_config(REPO / "configs" / RUNS[name], [*ov, f"name={name}"]).layout.postprocess.read_text()
        )
        assert rows[name][cv] == f"{post['scores']['cv']:.4f}" and rows[name][1] == "3 (0,1,2)"
    assert rows["demo-ensemble"][cv] == f"{record['scores']['cv']:.4f}"
    assert "loss" in rows["demo"][COLUMNS.index("config differences")]  # demo-b differs in its loss
    page = (tmp_path / "runs" / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') >= 3  # threshold curves of the three tuned experiments
