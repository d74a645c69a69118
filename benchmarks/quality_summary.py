"""Quality on real data: per-fold validation metric (thr 0.5) and the tuned OOF scores of experiments.

Usage (after training folds and `kseg tune`, see benchmarks/README.md):
    python benchmarks/quality_summary.py runs/tgs-salt/unet-r18-cpu runs/isbi2012/unet-r18-cpu
Writes results/quality.json: one record per experiment, ratio = cross-validated tuned score / the
fold-mean score at threshold 0.5 (goal 1.0: tuning on OOF does not hurt the honest estimate).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import sys
from pathlib import Path

from _common import write_results


def fold_rows(run: Path) -> list[dict]:
    rows = []
    for fold_dir in sorted(run.glob("fold*")):
        metrics = list(csv.DictReader(open(fold_dir / "metrics.csv")))
        best = max(metrics, key=lambda r: float(r["val_metric"]))
        rows.append(
            {
                "fold": int(fold_dir.name[4:]),
                "epochs": len(metrics),
                "best_epoch": int(best["epoch"]),
                "val_metric_thr05": round(float(best["val_metric"]), 4),
                "train_minutes": round(sum(float(r["seconds"]) for r in metrics) / 60, 1),
            }
        )
    return rows


def main(runs: list[str]) -> None:
    records = []
    for run in map(Path, runs):
        folds = fold_rows(run)
        pp = json.loads((run / "postprocess.json").read_text())
        mean_fold = sum(f["val_metric_thr05"] for f in folds) / len(folds)
        scores = pp["scores"]
        records.append(
            {
                "name": f"quality_{run.parent.name}_{run.name}",
                "ratio": scores["cv"] / mean_fold,
                "goal": 1.0,
                "metric": pp["metric"],
                "folds": folds,
                "oof_default_thr05": scores["default"],
                "oof_tuned_optimistic": scores["tuned"],
                "oof_tuned_cv": scores["cv"],
                "params": [c["params"] for c in pp["classes"]],
                "oof_images": pp["n_images"],
                "hardware": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}",
            }
        )
        print(
            f"{run}: folds {[f['val_metric_thr05'] for f in folds]} | OOF thr0.5 {scores['default']:.4f} "
            f"| tuned {scores['tuned']:.4f} | CV {scores['cv']:.4f}"
        )
    write_results("quality", records)


if __name__ == "__main__":
    main(sys.argv[1:])
