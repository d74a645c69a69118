"""kseg report's table from hand-written run folders: every column by hand, config differences, HTML embeds PNGs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import yaml

from kseg.cli import main
from kseg.report.html import report_html
from kseg.report.table import collect, config_differences, markdown


def _run(root: Path, name: str, cfg: dict, metrics: dict[int, list[tuple[float, float]]], scores=None, **files) -> None:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    for fold, rows in metrics.items():
        (run / f"fold{fold}").mkdir()
        (run / f"fold{fold}" / "best.pt").write_bytes(b"x")
        df = pd.DataFrame([{"epoch": i + 1, "val_metric": s, "seconds": t} for i, (s, t) in enumerate(rows)])
        df.to_csv(run / f"fold{fold}" / "metrics.csv", index=False)
    if scores:
        post = {"scores": scores, "oof_tta": "hflip"}
        (run / "postprocess.json").write_text(json.dumps(post))
    for file, content in files.items():
        (run / file.replace("_", ".")).write_text(content)


def test_table_columns_by_hand(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    a = {"name": "c/a", "model": {"encoder": "resnet18"}, "loss": [{"name": "bce"}], "predict": {"tta": "hflip"}}
    b = {"name": "c/b", "model": {"encoder": "resnet34"}, "loss": [{"name": "bce"}], "predict": {"tta": "none"}}
    b["kernel"] = {"dir": str(tmp_path / "kernels")}
    _run(runs, "c/a", a, {0: [(0.5, 60), (0.7, 60)], 1: [(0.6, 30)]}, {"default": 0.61, "tuned": 0.66, "cv": 0.64})
    _run(runs, "c/b", b, {0: [(0.4, 120)]})
    push = {"kernel": {"version": 2, "status": "complete"}, "history": [{"kernel": {"version": 1, "status": "error"}}]}
    push["submissions"] = [{"kernel_version": 2, "public_score": 0.812}]
    (tmp_path / "kernels/c/b").mkdir(parents=True)
    (tmp_path / "kernels/c/b/push.json").write_text(json.dumps(push))
    ens = {"members": [{"run": "c/a", "weight": 0.75}, {"run": "c/b", "weight": 0.25}], "folds": [0, 1]}
    ens["scores"] = {"cv": 0.655}
    _run(
        runs, "c/ens", {"name": "c/ens"}, {}, {"default": 0.6, "tuned": 0.7, "cv": 0.68}, ensemble_json=json.dumps(ens)
    )
    (runs / "logs").mkdir()  # no config.yaml: not an experiment

    rows = {r.name: r for r in collect(runs)}
    assert list(rows) == ["c/a", "c/b", "c/ens"]
    ra, rb, re_ = rows["c/a"], rows["c/b"], rows["c/ens"]
    assert ra.folds == [0, 1] and ra.fold_best == {0: 0.7, 1: 0.6} and ra.seconds == 150
    assert (ra.default, ra.tuned, ra.cv, ra.oof_tta, ra.predict_tta) == (0.61, 0.66, 0.64, "hflip", "hflip")
    assert ra.differences == {"model.encoder": "resnet18", "predict.tta": "hflip"}  # loss and name are not listed
    assert rb.kernels == ["v1 error", "v2 complete"] and rb.lb == ["v2: 0.812"]
    assert re_.kind == "ensemble" and re_.members == {"c/a": 0.75, "c/b": 0.25}
    assert re_.cv == 0.655 and re_.tuned == 0.7  # CV: ensemble.json's nested estimate, tuned: optimistic

    table = markdown(list(rows.values()))
    line_a = next(line for line in table.splitlines() if line.startswith("| c/a "))
    cells = [c.strip() for c in line_a.strip("|").split("|")]
    assert cells == [
        "c/a",
        "2 (0,1)",
        "0.7000 0.6000",
        "0.6100",
        "0.6600",
        "0.6400",
        "oof hflip / predict hflip",
        "-",
        "-",
        'model.encoder="resnet18", predict.tta="hflip"',
        "2.5 min",
    ]
    assert "ensemble of c/a 0.75, c/b 0.25" in table

    assert main(["report", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| experiment | folds |") and "c/ens" in out
    page = (runs / "report.html").read_text()
    assert page.count("<tr>") == 4 and 'src="data:image/png;base64,' not in page  # no tune.csv: no curves yet


def test_config_differences_only_lists_differing_keys() -> None:
    got = config_differences({"a": {"x": 1, "y": {"z": [1, 2]}, "name": "a"}, "b": {"x": 1, "y": {"z": [1]}}})
    assert got == {"a": {"y.z": [1, 2]}, "b": {"y.z": [1]}}


def test_html_embeds_threshold_curves(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _run(runs, "e", {"name": "e"}, {0: [(0.5, 1)]}, {"default": 0.5, "tuned": 0.6, "cv": 0.55})
    df = pd.DataFrame({"class": "salt", "threshold": [0.3, 0.5, 0.3, 0.5], "min_size": [0, 0, 10, 10]})
    df["score"] = [0.5, 0.6, 0.55, 0.58]
    df.to_csv(runs / "e" / "tune.csv", index=False)
    page = report_html(collect(runs), runs)
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', page)) == 1
